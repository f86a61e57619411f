"""Chunked prefill in the simulated prefill instances (issue 18 item 1): iterations of at most
``chunk_tokens`` prompt tokens, FCFS, priced by their tokens and the context already computed;
off by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from sim_helpers import busy_workload, config, cost
from tandem.cli import app
from tandem.errors import ConfigError
from tandem.experiments.rescheduling import Setup, config_for
from tandem.metrics.serving import parse_slo
from tandem.perf.measured import DecodePoint, MeasuredCostModel, PrefillPoint
from tandem.plan.inputs import shape_from_means
from tandem.plan.planner import PlanRequest
from tandem.plan.search import criteria
from tandem.sim import simulate
from tandem.sim.prefill import PrefillInstance
from tandem.sim.request import SimRequest
from tandem.workload.request import workload_from_arrays

N = 100


def _chunk_s(chunks: list[tuple[int, int]]) -> float:
    """The test cost model's iteration: a + b*sum(k) + c*sum((p+k)^2 - p^2)."""
    return 0.01 + 1e-4 * sum(k for _, k in chunks) + 1e-8 * sum(k * (k + 2 * p) for p, k in chunks)


def test_a_prompt_of_three_chunks_takes_three_iterations() -> None:
    """3N prompt tokens with chunk N: three iterations, TTFT ends after the third."""
    r = simulate(workload_from_arrays("one", [0.0], [3 * N], [1]), config(chunk_tokens=N))
    expected = sum(_chunk_s([(p, N)]) for p in (0, N, 2 * N))
    assert r.first_token_s[0] == pytest.approx(expected)
    instance = PrefillInstance(0, cost(), 8192, chunk_tokens=N)
    instance.enqueue(SimRequest(0, 0, 0.0, 3 * N, 1))
    finished_per_iteration = []
    while instance.queue:
        batch, _ = instance.next_batch()
        instance.finish_batch(batch)
        finished_per_iteration.append(len(batch))
    assert finished_per_iteration == [0, 0, 1]
    assert instance.num_iterations == 3 and instance.queued_tokens == 0


def test_two_requests_share_an_iteration() -> None:
    """FCFS: the head's last chunk and the next request's first chunk run together."""
    w = workload_from_arrays("two", [0.0, 0.0], [150, 120], [1, 1])
    r = simulate(w, config(chunk_tokens=N))
    it1 = _chunk_s([(0, 100)])
    it2 = _chunk_s([(100, 50), (0, 50)])  # request 0 ends, request 1 starts
    it3 = _chunk_s([(50, 70)])
    assert r.first_token_s[0] == pytest.approx(it1 + it2)
    assert r.first_token_s[1] == pytest.approx(it1 + it2 + it3)
    # Short prompts queued behind a busy iteration share the next one and all get their first
    # token at its end.
    w = workload_from_arrays("four", [0.0] * 4, [100, 30, 30, 30], [1] * 4)
    r = simulate(w, config(chunk_tokens=N))
    first, shared = _chunk_s([(0, 100)]), _chunk_s([(0, 30)] * 3)
    assert r.first_token_s.tolist() == pytest.approx([first] + [first + shared] * 3)


def test_off_by_default_and_unqueued_prompts_below_the_chunk_are_unchanged() -> None:
    """chunk_tokens=None is the default; prompts that never queue and fit one chunk are
    prefilled exactly as whole prompts (the chunked path prices them the same)."""
    n = 50
    w = workload_from_arrays(
        "sparse", [float(i) for i in range(n)], [40 + 7 * i for i in range(n)], [20] * n
    )
    assert config().chunk_tokens is None
    off = simulate(w, config())
    on = simulate(w, config(chunk_tokens=1000))
    assert np.array_equal(off.first_token_s, on.first_token_s)
    assert np.array_equal(off.finish_s, on.finish_s)


@pytest.mark.filterwarnings("ignore")
def test_conservation_with_chunks() -> None:
    """Every request ends once, its tokens add up, prefill time is conserved on the
    measured-table model (no per-iteration base there: chunks sum to the whole prompt)."""
    w = busy_workload(n=300)
    r = simulate(w, config(kv_capacity=6000, num_decode=2, num_prefill=2, chunk_tokens=64))
    m = r.metrics()
    assert m["num_completed"] + m["num_rejected"] == len(w)
    done = r.completed
    assert np.array_equal(r.generated_tokens[done], r.output_tokens[done])
    assert np.all(r.first_token_s[done] > r.arrival_s[done])
    measured = MeasuredCostModel(
        "m", "m", "h", 1, (PrefillPoint(100, 1e4), PrefillPoint(400, 5e3)), 0.0,
        (DecodePoint(1, 0.01), DecodePoint(64, 0.02)), 1000, 100_000,
    )  # fmt: skip
    whole = simulate(w, config(prefill_cost=measured, decode_cost=measured))
    chunked = simulate(w, config(prefill_cost=measured, decode_cost=measured, chunk_tokens=64))
    assert sum(chunked.prefill_busy_s) == pytest.approx(sum(whole.prefill_busy_s))
    assert measured.prefill_chunks_time_s([(0, 64), (64, 336)]) == pytest.approx(
        measured.prefill_time_s([400])
    )


def test_a_zero_chunk_is_refused() -> None:
    with pytest.raises(ConfigError):
        config(chunk_tokens=0)


def test_cli_aliases_set_the_chunk() -> None:
    """--chunk-tokens, vLLM's --max-num-batched-tokens and SGLang's --chunked-prefill-size."""
    outputs = []
    for flag in ("--chunk-tokens", "--max-num-batched-tokens", "--chunked-prefill-size", None):
        args = ["simulate", "--random-input-len", "3000", "--num-prompts", "20", "--json"]
        args += ["--random-output-len", "4", "--prefill", "1", "--decode", "1"]
        if flag is not None:
            args += [flag, "512"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1] == outputs[2] != outputs[3]


def test_plan_and_experiment_pass_the_chunk_to_their_simulations() -> None:
    """plan --verify's criteria and the experiment's cluster carry chunk_tokens."""
    req = PlanRequest(shape_from_means(1000, 100), 1.0, 2.0, 0.05, cost())
    assert criteria(req).chunk_tokens is None
    assert criteria(replace(req, chunk_tokens=512)).chunk_tokens == 512
    w = busy_workload(n=10)
    setup = Setup(w, cost(), 1, 1, parse_slo("tpot=100ms"), 10.0, chunk_tokens=256)
    assert config_for(setup, "round-robin").chunk_tokens == 256
    with pytest.raises(ConfigError):
        replace(req, chunk_tokens=0)
