"""TTFT includes the profile's request overhead everywhere; prefill service-time variability is
off by default, seeded, mean-preserving, and makes TTFT grow near saturation."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
from typer.testing import CliRunner

from sim_helpers import busy_workload, config, cost
from tandem.cli import app
from tandem.errors import ConfigError
from tandem.perf.linear import LinearCostModel
from tandem.sim import simulate
from tandem.sim.variability import ServiceTimeNoise
from tandem.workload.request import workload_from_arrays
from tandem.workload.synthetic import FixedLength, synthetic_workload


@dataclass(frozen=True)
class _WithOverhead(LinearCostModel):
    overhead_s: float = 0.0

    def request_overhead_s(self) -> float:
        return self.overhead_s


def _overhead_cost(overhead_s: float) -> _WithOverhead:
    base = cost()
    return _WithOverhead(**{**base.__dict__, "overhead_s": overhead_s})


def test_overhead_shifts_ttft_and_e2e_by_exactly_the_overhead_and_leaves_tpot() -> None:
    w = workload_from_arrays("one", [1.0], [100], [4])
    plain = simulate(w, config()).metrics()
    c = _overhead_cost(0.25)
    shifted = simulate(w, config(prefill_cost=c, decode_cost=c)).metrics()
    assert shifted["mean_ttft_ms"] == pytest.approx(plain["mean_ttft_ms"] + 250.0)
    assert shifted["mean_e2el_ms"] == pytest.approx(plain["mean_e2el_ms"] + 250.0)
    assert shifted["mean_tpot_ms"] == pytest.approx(plain["mean_tpot_ms"])
    assert shifted["request_overhead_ms"] == pytest.approx(250.0)
    assert plain["request_overhead_ms"] == 0.0


def test_overhead_counts_in_slo_attainment_and_the_per_request_ttft() -> None:
    w = workload_from_arrays("one", [0.0], [100], [4])
    c = _overhead_cost(0.5)
    r = simulate(w, config(prefill_cost=c, decode_cost=c))
    assert r.ttft_s[0] == pytest.approx(r.first_token_s[0] + 0.5)
    from tandem.metrics.serving import SLO

    assert simulate(w, config()).metrics(SLO(ttft_s=0.4))["slo_attainment"] == 1.0
    assert r.metrics(SLO(ttft_s=0.4))["slo_attainment"] == 0.0


def test_simulate_cli_counts_a_measured_files_overhead() -> None:
    runner = CliRunner()
    args = ["simulate", "-w", "azure-conv", "--num-requests", "50", "--json"]
    profile = "examples/measured_deepseek_v3_h200.yaml"
    out = json.loads(runner.invoke(app, [*args, "--profile", profile]).stdout)
    from tandem.perf.registry import get_profile

    assert out["request_overhead_ms"] == pytest.approx(
        get_profile(profile).request_overhead_s() * 1000
    )
    assert out["request_overhead_ms"] > 0


def test_cv_zero_is_the_deterministic_run_exactly() -> None:
    w = busy_workload()
    a = simulate(w, config(num_decode=2))
    b = simulate(w, config(num_decode=2, prefill_cv=0.0, seed=7))
    assert np.array_equal(a.first_token_s, b.first_token_s)
    assert np.array_equal(a.finish_s, b.finish_s)


def test_cv_runs_are_identical_under_one_seed_and_differ_under_another() -> None:
    w = busy_workload()
    a = simulate(w, config(prefill_cv=0.5, seed=1))
    b = simulate(w, config(prefill_cv=0.5, seed=1))
    c = simulate(w, config(prefill_cv=0.5, seed=2))
    assert np.array_equal(a.first_token_s, b.first_token_s)
    assert not np.array_equal(a.first_token_s, c.first_token_s)


def test_multipliers_have_mean_one_and_the_requested_cv() -> None:
    noise = ServiceTimeNoise(0.3, seed=0)
    draws = np.array([noise.multiplier() for _ in range(100_000)])
    assert draws.mean() == pytest.approx(1.0, abs=0.005)
    assert draws.std() == pytest.approx(0.3, rel=0.02)
    assert draws.min() > 0


def test_cv_keeps_the_mean_prefill_busy_time() -> None:
    w = busy_workload(n=2000, rate=20.0)
    plain = sum(simulate(w, config()).prefill_busy_s)
    noisy = sum(simulate(w, config(prefill_cv=0.5, seed=3)).prefill_busy_s)
    assert noisy == pytest.approx(plain, rel=0.03)


def test_cv_makes_ttft_grow_near_saturation() -> None:
    # One prefill instance at ~90% utilisation, one prompt per batch: M/D/1 against M/G/1 with
    # cv 1 (exponential), whose mean wait is twice as long.
    c = cost()
    prompt = 400
    service_s = c.prefill_time_s([prompt])
    w = synthetic_workload(
        num_requests=4000,
        rate_rps=0.9 / service_s,
        input_len=FixedLength(prompt),
        output_len=FixedLength(2),
        seed=5,
    )
    base = config(prefill_token_budget=prompt, num_decode=4)
    det = simulate(w, base).metrics()["mean_ttft_ms"]
    noisy = simulate(w, replace(base, prefill_cv=1.0)).metrics()["mean_ttft_ms"]
    assert noisy > 1.4 * det


@pytest.mark.parametrize("cv", [-0.1, float("nan"), float("inf")])
def test_bad_cv_is_refused(cv: float) -> None:
    with pytest.raises(ConfigError):
        config(prefill_cv=cv)
