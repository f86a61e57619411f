"""Queueing formulas, monotonicity of plans, and refusal of bad numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.errors import ConfigError
from tandem.plan.inputs import parse_rate, parse_throughput, parse_tpot_table, shape_from_means
from tandem.plan.planner import PlanRequest, make_plan, table_cost_model
from tandem.plan.queueing import erlang_c, mean_wait_s, wait_quantile_s

COST = table_cost_model(
    input_len_tokens=2048,
    prefill_max_tokens_per_s=20000,
    overhead_s=0.05,
    tpot_points=parse_tpot_table("1:8,10:12,20:15,40:21,80:33,160:60"),
)


def _plan(rate: float, ttft: float = 1.0, tpot: float = 0.03, pct: float | None = None):  # noqa: ANN202
    req = PlanRequest(shape_from_means(2048, 256), rate, ttft, tpot, COST, 0.05, pct)
    return make_plan(req)


def test_mg1_with_exponential_service_is_mm1() -> None:
    """Allen-Cunneen with c=1, cs2=1 equals the M/M/1 wait rho/(mu - lambda)."""
    mu, lam = 10.0, 7.0
    assert mean_wait_s(lam, 1, 1 / mu, 1.0) == pytest.approx((lam / mu) / (mu - lam))


def test_md1_waits_half_as_long_as_mm1() -> None:
    """Pollaczek-Khinchine: deterministic service halves the mean wait."""
    assert mean_wait_s(5, 1, 0.1, 0.0) == pytest.approx(mean_wait_s(5, 1, 0.1, 1.0) / 2)


def test_mm1_wait_quantile_is_exact() -> None:
    """M/M/1: P(W > t) = rho exp(-(mu - lambda) t)."""
    mu, lam, q = 10.0, 8.0, 0.9
    expected = math.log((lam / mu) / (1 - q)) / (mu - lam)
    assert wait_quantile_s(lam, 1, 1 / mu, 1.0, q) == pytest.approx(expected)


def test_erlang_c_known_value() -> None:
    """Erlang C for c=2, a=1 is 1/3."""
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 40), st.floats(1.01, 3.0))
def test_more_load_never_needs_fewer_instances(rate: float, factor: float) -> None:
    """Monotone in load, prefill and decode separately."""
    a, b = _plan(rate), _plan(rate * factor)
    assert b.num_prefill >= a.num_prefill and b.num_decode >= a.num_decode
    assert b.paper.num_prefill >= a.paper.num_prefill
    assert b.paper.num_decode >= a.paper.num_decode


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 30), st.floats(0.3, 2.0), st.floats(0.5, 0.95))
def test_tighter_slo_never_needs_fewer_instances(rate: float, ttft: float, shrink: float) -> None:
    """Tightening TTFT or TPOT never lowers a feasible plan's counts."""
    loose, tight_ttft = _plan(rate, ttft, 0.03), _plan(rate, ttft * shrink, 0.03)
    if tight_ttft.feasible:
        assert tight_ttft.num_prefill >= loose.num_prefill
    tight_tpot = _plan(rate, ttft, 0.03 * shrink)
    if tight_tpot.feasible:
        assert tight_tpot.num_decode >= loose.num_decode


@pytest.mark.filterwarnings("ignore")
def test_p99_ttft_needs_at_least_as_many_as_p90_and_mean() -> None:
    """A higher percentile is a tighter SLO."""
    mean, p90, p99 = _plan(20, 0.5), _plan(20, 0.5, pct=90), _plan(20, 0.5, pct=99)
    assert mean.num_prefill <= p90.num_prefill <= p99.num_prefill


@pytest.mark.filterwarnings("ignore")
def test_infeasible_slos_say_why() -> None:
    """TTFT below overhead + prefill, TPOT below the batch-of-one step: feasible=False."""
    ttft = _plan(5, ttft=0.1)
    assert not ttft.feasible and ttft.reason and "TTFT" in ttft.reason
    tpot = _plan(5, tpot=0.005)
    assert not tpot.feasible and tpot.reason and "TPOT" in tpot.reason


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": 0.0}, {"rate": -1.0}, {"ttft": 0.0}, {"tpot": -0.01}, {"pct": 100.0}],
)
def test_bad_numbers_are_refused(kwargs: dict) -> None:
    """Zero or negative rates and SLOs, percentiles outside (0, 100): ConfigError."""
    args = {"rate": 5.0, "ttft": 1.0, "tpot": 0.03, "pct": None} | kwargs
    with pytest.raises(ConfigError):
        _plan(args["rate"], args["ttft"], args["tpot"], args["pct"])


@pytest.mark.parametrize("lengths", [(0, 256), (2048, 0), (-5, 10)])
def test_bad_lengths_are_refused(lengths: tuple[int, int]) -> None:
    """Zero or negative mean lengths: ConfigError."""
    with pytest.raises(ConfigError, match="length"):
        shape_from_means(*lengths)


def test_parsers() -> None:
    """5M/min, 80k/s, 10rps, 600/min; bad text refused."""
    assert parse_throughput("5M/min") == pytest.approx(5e6 / 60)
    assert parse_throughput("80k/s") == pytest.approx(8e4)
    assert parse_rate("10rps") == 10 and parse_rate("600/min") == 10
    for bad in ("-1M/min", "fast", "5M/fortnight"):
        with pytest.raises(ConfigError):
            parse_throughput(bad)
    with pytest.raises(ConfigError):
        parse_tpot_table("20:16,10:12")
