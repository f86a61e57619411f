"""Perf-model defects of issue 18 stay fixed: Llama-2-70B context slopes come from the kernels
(same attention shapes as Llama-3-70B, same slope), DistServe profiles carry DistServe's
per-iteration cost, and the stated context range is the range actually measured."""

from __future__ import annotations

import warnings

import pytest

from tandem.perf import OutOfMeasuredRangeWarning
from tandem.perf.registry import get_profile

LLAMA2_70B = [f"llama2-70b_{hw}_tp{tp}" for hw in ("a100", "h100") for tp in (2, 4, 8)]


def _slope(name: str) -> float:
    return get_profile(name).decode_step_coeffs(8)[1]


@pytest.mark.parametrize("name", LLAMA2_70B)
def test_every_llama2_70b_profile_has_a_positive_context_slope(name: str) -> None:
    assert _slope(name) > 0


@pytest.mark.parametrize("hw", ["a100", "h100"])
def test_llama2_and_llama3_70b_share_the_context_slope_of_their_shared_attention(hw: str) -> None:
    assert _slope(f"llama2-70b_{hw}_tp4") == pytest.approx(_slope(f"llama3-70b_{hw}_tp4"), rel=0.1)


@pytest.mark.parametrize("hw", ["a100", "h100"])
def test_the_context_slope_halves_as_tensor_parallelism_doubles(hw: str) -> None:
    # Each GPU reads its shard of the KV cache: twice the GPUs, half the time per token.
    tp2, tp4, tp8 = (_slope(f"llama2-70b_{hw}_tp{tp}") for tp in (2, 4, 8))
    assert tp4 == pytest.approx(tp2 / 2, rel=0.25)
    assert tp8 == pytest.approx(tp4 / 2, rel=0.25)


# DistServe's OPT-13B TP1 coefficients (ms; profiler-a100-80g.distserve.json, commit 82831f1).
_PREFILL = (18.10254647486372, 0.1019122572698738, 7.122264314252114e-06)
_SMALL = (19.934702624895458, 0.0006269356524350583, 0.03850697740828398)


def _distserve_ms(batch: int, context_per_request: int) -> float:
    """DistServe's simulated decode iteration: its fitted time plus its worker's
    ``add_ray_overhead`` (2 ms + 1e-4 ms per context token)."""
    a, b, c = _SMALL
    total = batch * context_per_request
    return a + b * (total + batch) + c * batch + 2.0 + 1e-4 * total


def test_opt_decode_step_is_distserves_simulated_iteration() -> None:
    cost = get_profile("opt-13b_a100_tp1")
    for batch, ctx in ((1, 100), (16, 700), (64, 1500)):
        got_ms = cost.decode_step_time_s(batch, batch * ctx) * 1e3
        assert got_ms == pytest.approx(_distserve_ms(batch, ctx), rel=1e-9)


def test_opt_prefill_is_distserves_simulated_iteration() -> None:
    cost = get_profile("opt-13b_a100_tp1")
    a, b, c = _PREFILL
    lens = [300, 900]
    expected_ms = a + b * sum(lens) + c * sum(n * n for n in lens) + 1.0  # + PP = 1 ms
    expected_ms += 2.0 + 1e-4 * sum(lens)  # the worker's per-iteration cost
    assert cost.prefill_time_s(lens) * 1e3 == pytest.approx(expected_ms, rel=1e-9)


def test_operator_profiles_state_the_context_their_grid_reached() -> None:
    # Qwen2.5-7B runs 32K contexts and the kernel tables reach them: measured to 32,768.
    # Llama-3-8B's own limit is 8,192: beyond it the profile (and the model) extrapolate.
    assert get_profile("qwen2.5-7b_h100_tp1").measured_range.max_context_tokens_per_request == 32768
    llama = get_profile("llama3-8b_a100_tp1")
    assert llama.measured_range.max_context_tokens_per_request == 8192
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfMeasuredRangeWarning)
        get_profile("qwen2.5-7b_h100_tp1").decode_step_time_s(4, 4 * 30_000)
        with pytest.raises(OutOfMeasuredRangeWarning, match="context"):
            llama.decode_step_time_s(4, 4 * 30_000)
