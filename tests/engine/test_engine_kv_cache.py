"""The left-padded running-batch cache and the sampler, checked on plain tensors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tandem.engine.kv_cache import SPARE_TOKENS, RunningBatch, SlabLayer  # noqa: E402
from tandem.engine.sampling import SamplingParams, make_generator, sample_tokens  # noqa: E402
from tandem.errors import ConfigError  # noqa: E402


def _row(length: int, value: float, layers: int = 2):
    return [
        (torch.full((2, length, 3), value), torch.full((2, length, 3), -value))
        for _ in range(layers)
    ]


def test_rows_round_trip_through_padding_merge_and_select():
    """Rows keep their own tokens through left padding, merging and selection."""
    batch = RunningBatch.from_rows([_row(3, 1.0), _row(5, 2.0)])
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    merged = RunningBatch.merge(batch, RunningBatch.from_rows([_row(7, 3.0)]))
    assert merged.num_rows == 3 and merged.width_tokens == 7
    for row, (length, value) in enumerate([(3, 1.0), (5, 2.0), (7, 3.0)]):
        keys, values = merged.row_kv(row)[1]
        assert keys.shape == (2, length, 3) and bool((keys == value).all())
        assert bool((values == -value).all())
    kept = merged.select([1, 0])
    assert kept is not None and kept.width_tokens == 5  # all-padding columns trimmed
    assert kept.row_kv(0)[0][0].shape[1] == 5 and kept.row_kv(1)[0][0].shape[1] == 3
    assert merged.select([]) is None


def test_slab_layer_appends_in_place_and_grows():
    """Appends land after the cached tokens, also past the preallocated spare columns."""
    layer = SlabLayer(torch.zeros(1, 1, 2, 1), torch.zeros(1, 1, 2, 1))
    for step in range(SPARE_TOKENS + 3):
        keys, _ = layer.update(torch.full((1, 1, 1, 1), step + 1.0), torch.zeros(1, 1, 1, 1))
    assert keys.shape[2] == 2 + SPARE_TOKENS + 3
    assert keys[0, 0, :, 0].tolist() == [0.0, 0.0] + [float(s + 1) for s in range(SPARE_TOKENS + 3)]


def test_sampler_greedy_top_p_and_seed():
    """Temperature 0 is argmax; a tiny top_p keeps only the top token; seeds reproduce draws."""
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.9]])
    gens = [make_generator(0), make_generator(0)]
    greedy = SamplingParams(temperature=0.0)
    assert sample_tokens(logits, [greedy, greedy], gens) == [1, 0]
    narrow = SamplingParams(temperature=1.0, top_p=0.01)
    for _ in range(10):
        assert sample_tokens(logits, [narrow, narrow], gens) == [1, 0]
    hot = SamplingParams(temperature=5.0)
    first = [
        sample_tokens(logits, [hot, hot], [make_generator(9), make_generator(9)]) for _ in range(3)
    ]
    assert first[0] == first[1] == first[2]


def test_bad_sampling_params_are_refused():
    """Negative temperature, top_p outside (0, 1] and max_new_tokens < 1 are user errors."""
    for kwargs in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError):
            SamplingParams(**kwargs)
