"""Inter-token latency in the simulator: exact, conserved, and in the metrics (issue 18)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sim_helpers import busy_workload, config
from tandem.cli import app
from tandem.sim import simulate
from tandem.sim.itl import ItlSample


@pytest.mark.parametrize(
    "kw",
    [
        {"kv_capacity": 20_000},  # preemptions and recompute
        {"kv_capacity": 9000, "num_decode": 3, "rescheduler": "llumnix"},  # migrations
    ],
    ids=["preemption", "migration"],
)
def test_gaps_of_every_request_sum_to_its_decode_time_in_both_modes(kw: dict) -> None:
    """Pooled gaps: one per token after the first, summing to E2E - TTFT over requests
    (stalls from waiting, preemption and migration included); fast-forward equals exact."""
    w = busy_workload(n=300, rate=40.0)
    samples = []
    for exact in (False, True):
        result = simulate(w, config(**kw, record_itl=True, exact=exact))
        m = result.metrics()
        assert m["num_preempted"] + m["num_migrations"] > 0
        done = result.completed
        assert result.itl is not None
        assert result.itl.counts.sum() == int((result.output_tokens[done] - 1).sum())
        decode_s = float((result.finish_s[done] - result.first_token_s[done]).sum())
        assert result.itl.total_s == pytest.approx(decode_s, rel=1e-9)
        assert m["p99_itl_ms"] >= m["median_itl_ms"] > 0
        samples.append(m)
    for key in ("mean_itl_ms", "p50_itl_ms", "p99_itl_ms", "std_itl_ms"):
        assert samples[0][key] == pytest.approx(samples[1][key], rel=1e-6)


def test_weighted_percentiles_equal_numpys_on_the_listed_gaps() -> None:
    values = np.array([0.01, 0.02, 0.05, 0.3])
    counts = np.array([5.0, 3.0, 1.0, 2.0])
    listed = np.repeat(values, counts.astype(int)) * 1000
    got = ItlSample(values, counts).describe((50, 90, 99))
    assert got["mean_itl_ms"] == pytest.approx(listed.mean())
    assert got["std_itl_ms"] == pytest.approx(listed.std())
    for p in (50, 90, 99):
        assert got[f"p{p}_itl_ms"] == pytest.approx(np.percentile(listed, p))


def test_itl_is_off_unless_asked_and_simulate_reports_it() -> None:
    """The README promises ITL in simulate's output."""
    assert "mean_itl_ms" not in simulate(busy_workload(n=50), config()).metrics()
    args = ["simulate", "--num-requests", "100", "--prefill", "1", "--decode", "1", "--json"]
    m = json.loads(CliRunner().invoke(app, args).stdout)
    assert m["p99_itl_ms"] >= m["mean_itl_ms"] > 0
