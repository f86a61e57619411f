"""Data collection on the real embedded model: a handful of requests, every recorded field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tandem.engine.loader import load_model  # noqa: E402
from tandem.predict.collect import CollectSpec, collect_samples  # noqa: E402
from tandem.predict.dataset import load_samples, save_samples  # noqa: E402
from tandem.predict.prompts import OpeningSpec, story_openings  # noqa: E402


@pytest.fixture(scope="module")
def collected():
    torch.set_num_threads(1)
    loaded = load_model("default")
    prompts = story_openings(loaded, OpeningSpec(num_prompts=5, seed=3), max_batch_size=8)
    samples = collect_samples(
        loaded, prompts, CollectSpec(every_tokens=20, seed=3, max_batch_size=8)
    )
    return loaded, prompts, samples


def test_openings_are_distinct_bos_prefixed_prompts(collected):
    """Prompts are BOS + 4..32 sampled tokens, distinct, without an end-of-story token."""
    _, prompts, _ = collected
    assert len(set(map(tuple, prompts))) == 5
    for p in prompts:
        assert p[0] == 1 and 5 <= len(p) <= 33 and 1 not in p[1:] and 2 not in p[1:]


def test_samples_are_labelled_with_remaining_tokens(collected):
    """Every request has a g = 0 sample; g is a multiple of 20; remaining = output - g >= 1."""
    loaded, prompts, s = collected
    assert s.num_requests == 5 and s.layer == 5 and s.mid_layer == 2
    assert s.identity == loaded.identity
    rid, g, rem = s["sample_request_id"], s["sample_tokens_generated"], s["sample_remaining_tokens"]
    total = s["request_output_tokens"][s.request_index()]
    np.testing.assert_array_equal(rem, total - g)
    assert (g % 20 == 0).all() and (rem >= 1).all()
    for r in s["request_id"]:
        mine = np.sort(g[rid == r])
        n = int(s["request_output_tokens"][s["request_id"] == r][0])
        np.testing.assert_array_equal(mine, np.arange(0, n, 20))
    assert s["sample_hidden"].shape == (s.num_samples, 64)
    assert s["sample_hidden_mid"].shape == (s.num_samples, 64)
    first = g == 0
    np.testing.assert_allclose(
        s["sample_hidden"][first], s["request_prompt_hidden"][s.request_index()[first]]
    )
    assert s["request_prompt_mean_mid"].shape == (5, 64)
    assert s.prompts() == [list(p) for p in prompts]


def test_saved_file_round_trips(tmp_path: Path, collected):
    """The collected file loads back for the same model."""
    loaded, _, s = collected
    again = load_samples(save_samples(s, tmp_path / "c.npz"), loaded.identity)
    np.testing.assert_array_equal(again["sample_hidden"], s["sample_hidden"])
    assert again.notes["sampling"]["seed"] == 3
