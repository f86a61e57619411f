"""Serving metrics against hand-computed cases (vLLM definitions)."""

from __future__ import annotations

import pytest

from tandem.errors import ConfigError
from tandem.metrics import SLO, RequestRecord, compute_metrics, parse_slo

# Request A: arrives 0, first token 1.0, finish 3.0, 5 tokens -> TTFT 1, TPOT 0.5, E2E 3.
# Request B: arrives 1, first token 1.5, finish 1.5, 1 token -> TTFT 0.5, no TPOT, E2E 0.5.
# Request C: arrives 2, first token 4.0, finish 5.0, 3 tokens -> TTFT 2, TPOT 0.5, E2E 3.
A = RequestRecord(0.0, 1.0, 3.0, 10, 5, itl_s=[0.5, 0.5, 0.5, 0.5])
B = RequestRecord(1.0, 1.5, 1.5, 20, 1, itl_s=[])
C = RequestRecord(2.0, 4.0, 5.0, 30, 3, itl_s=[0.25, 0.75])


def test_ttft_tpot_e2e_means_and_percentiles() -> None:
    m = compute_metrics([A, B, C])
    assert m["mean_ttft_ms"] == pytest.approx(1166.6667, rel=1e-6)
    assert m["median_ttft_ms"] == pytest.approx(1000.0)
    # numpy linear percentile of [500, 1000, 2000] at 90: 1000 + 0.8 * 1000
    assert m["p90_ttft_ms"] == pytest.approx(1800.0)
    assert m["mean_tpot_ms"] == pytest.approx(500.0)  # B (1 token) excluded
    assert m["std_tpot_ms"] == pytest.approx(0.0)
    assert m["mean_e2el_ms"] == pytest.approx((3000 + 500 + 3000) / 3)
    assert m["std_ttft_ms"] == pytest.approx(623.6096, rel=1e-6)  # population std


def test_itl_is_pooled_over_requests() -> None:
    m = compute_metrics([A, B, C])
    assert m["mean_itl_ms"] == pytest.approx(500.0)
    # pooled sorted [250, 500, 500, 500, 500, 750]; p99 at index 4.95 -> 500 + 0.95 * 250
    assert m["p99_itl_ms"] == pytest.approx(737.5)


def test_throughput_uses_duration_from_first_arrival_to_last_finish() -> None:
    m = compute_metrics([A, B, C])
    assert m["duration"] == pytest.approx(5.0)
    assert m["request_throughput"] == pytest.approx(0.6)
    assert m["output_throughput"] == pytest.approx(9 / 5)
    assert m["total_token_throughput"] == pytest.approx((60 + 9) / 5)


def test_slo_attainment_and_goodput_count_failed_requests_as_misses() -> None:
    slo = SLO(ttft_s=1.5, tpot_s=0.6)
    m = compute_metrics([A, B, C], slo=slo, num_failed=1)
    assert m["slo_attainment"] == pytest.approx(2 / 4)  # A and B meet, C misses TTFT
    assert m["request_goodput"] == pytest.approx(2 / 5)


def test_one_token_request_counts_tpot_as_zero_for_goodput() -> None:
    assert SLO(tpot_s=0.001).met_by(B)
    assert not SLO(tpot_s=0.4).met_by(A)


def test_e2e_slo() -> None:
    m = compute_metrics([A, B, C], slo=SLO(e2e_s=1.0))
    assert m["slo_attainment"] == pytest.approx(1 / 3)


def test_parse_slo_units() -> None:
    assert parse_slo("ttft=2s,tpot=100ms") == SLO(ttft_s=2.0, tpot_s=0.1)
    assert parse_slo("e2el=1500") == SLO(e2e_s=1.5)
    with pytest.raises(ConfigError, match="bad SLO item"):
        parse_slo("latency=2s")
    with pytest.raises(ConfigError, match="finite time > 0"):
        parse_slo("ttft=-1s")


def test_parse_slo_takes_vllms_goodput_form_as_milliseconds() -> None:
    assert parse_slo("ttft:2000 tpot:50") == SLO(ttft_s=2.0, tpot_s=0.05)
    assert parse_slo("ttft=2s, tpot:50ms") == SLO(ttft_s=2.0, tpot_s=0.05)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft=nan", "finite time > 0"),
        ("tpot=inf", "finite time > 0"),
        ("ttft=1s,ttft=2s", "given twice"),
        ("", "empty"),
        (" , ", "empty"),
        ("ttft", "bad SLO item"),
    ],
)
def test_parse_slo_refuses_nonsense(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_slo(text)


def test_empty_input_gives_zeros_not_errors() -> None:
    m = compute_metrics([], slo=SLO(ttft_s=1.0))
    assert m["completed"] == 0 and m["mean_ttft_ms"] == 0.0 and m["slo_attainment"] == 0.0
