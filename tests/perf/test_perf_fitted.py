"""Closed-form fitted cost models: monotone, linear in context, range flags."""

from __future__ import annotations

import warnings

import pytest

from tandem.errors import ConfigError
from tandem.perf.fitted import DecodeSegment, FittedCostModel, PrefillSegment
from tandem.perf.instance import InstanceSpec
from tandem.perf.ranges import MeasuredRange, OutOfMeasuredRangeWarning
from tandem.perf.specs import get_hardware, get_model

INSTANCE = InstanceSpec(get_model("llama3-8b"), get_hardware("a100"), 1)


def make(
    prefill: tuple[PrefillSegment, ...] = (PrefillSegment(1, 0.01, 1e-4, 1e-9),),
    decode: tuple[DecodeSegment, ...] = (DecodeSegment(1, 0.01, 1e-4, 1e-7),),
    measured_range: MeasuredRange | None = None,
) -> FittedCostModel:
    return FittedCostModel("t", INSTANCE, prefill, decode, measured_range or MeasuredRange())


def test_prefill_and_decode_follow_the_forms() -> None:
    """a + b sum(L) + c sum(L^2); d + e B + f ctx."""
    model = make()
    assert model.prefill_time_s([100, 200]) == pytest.approx(0.01 + 1e-4 * 300 + 1e-9 * 50_000)
    assert model.decode_step_time_s(4, 1000) == pytest.approx(0.01 + 4e-4 + 1e-4)
    assert model.prefill_time_s([]) == 0.0 and model.decode_step_time_s(0, 0) == 0.0


def test_negative_coefficient_is_rejected() -> None:
    with pytest.raises(ConfigError):
        make(prefill=(PrefillSegment(1, -0.01, 1e-4, 0.0),))


def test_segment_that_starts_faster_is_rejected() -> None:
    """A later segment may not undercut the previous one at its start."""
    with pytest.raises(ConfigError, match="decode segment"):
        make(decode=(DecodeSegment(1, 0.02, 1e-3, 1e-7), DecodeSegment(50, 0.0, 1e-4, 1e-7)))
    with pytest.raises(ConfigError, match="prefill segment"):
        make(prefill=(PrefillSegment(1, 0.01, 1e-4, 0.0), PrefillSegment(4096, 0.0, 1e-5, 0.0)))


def test_segments_are_picked_by_batch_tokens_and_batch_size() -> None:
    model = make(
        prefill=(PrefillSegment(1, 0.01, 1e-4, 0.0), PrefillSegment(1000, 0.0, 2e-4, 0.0)),
        decode=(DecodeSegment(1, 0.01, 1e-4, 1e-7), DecodeSegment(64, 0.01, 2e-4, 1e-7)),
    )
    assert model.prefill_time_s([999]) == pytest.approx(0.01 + 0.0999)
    assert model.prefill_time_s([1000]) == pytest.approx(0.2)
    assert model.decode_step_coeffs(63)[0] == pytest.approx(0.01 + 63e-4)
    assert model.decode_step_coeffs(64)[0] == pytest.approx(0.01 + 64 * 2e-4)


def test_out_of_range_query_is_answered_and_warned_once() -> None:
    """Flagged, never silent, never repeated for the same profile."""
    model = make(measured_range=MeasuredRange(max_prompt_tokens=4096, max_decode_batch_size=64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model.prefill_time_s([8192]) > model.prefill_time_s([4096])
        model.decode_step_time_s(128, 1000)
        model.prefill_time_s([10_000])
    flagged = [w for w in caught if issubclass(w.category, OutOfMeasuredRangeWarning)]
    assert len(flagged) == 1 and "'t'" in str(flagged[0].message)
    other = make(measured_range=MeasuredRange(max_decode_batch_size=64))
    with pytest.warns(OutOfMeasuredRangeWarning, match="decode batch of 65"):
        other.decode_step_coeffs(65)


def test_in_range_query_does_not_warn() -> None:
    model = make(measured_range=MeasuredRange(max_prompt_tokens=4096))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.prefill_time_s([4096])
