"""User-measured tables: interpolation, extrapolation flags, file validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tandem.errors import InputFormatError
from tandem.perf.measured import MeasuredCostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.perf.registry import get_profile, load_measured

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "measured_deepseek_v3_h200.yaml"
TPOT = [(10, 12.8), (20, 16.4), (30, 18.8), (40, 21.6), (50, 23.9), (60, 26.2)]

VALID = """
name: t
model: m
hardware: h
num_gpus: 8
prefill:
  overhead_s: 0.1
  points:
    - {input_len_tokens: 1024, max_throughput_tokens_per_s: 20000}
    - {input_len_tokens: 6144, max_throughput_tokens_per_s: 28300}
decode:
  points:
    - {batch_size: 10, tpot_ms: 12.8}
    - {batch_size: 20, tpot_ms: 16.4}
kv: {bytes_per_token: 70272, capacity_tokens: 600000}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "measured.yaml"
    path.write_text(text)
    return path


def test_example_file_exposes_raw_values() -> None:
    """The capacity planner reads TP_max, the overhead and the TPOT table from this object."""
    model = load_measured(EXAMPLE)
    assert model.prefill_points[0].input_len_tokens == 6144
    assert model.prefill_points[0].max_throughput_tokens_per_s == 28300
    assert model.overhead_s == 0.1 and model.request_overhead_s() == 0.1
    assert [(p.batch_size, round(p.tpot_s * 1e3, 6)) for p in model.tpot_points] == TPOT
    assert model.prefill_throughput_tokens_per_s(6144) == pytest.approx(28300)
    assert model.prefill_time_s([6144]) == pytest.approx(6144 / 28300)


def test_tpot_interpolation_hits_table_points_and_is_monotone() -> None:
    model = load_measured(EXAMPLE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the table: no warning
        for batch, tpot_ms in TPOT:
            assert model.decode_step_time_s(batch, 10**6) == pytest.approx(tpot_ms / 1e3)
        assert model.decode_step_time_s(15, 0) == pytest.approx((12.8 + 16.4) / 2e3)
        inside = [model.decode_step_time_s(b, 0) for b in range(10, 61)]
    assert inside == sorted(inside)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        everywhere = [model.decode_step_time_s(b, 0) for b in range(1, 200)]
    assert everywhere == sorted(everywhere) and everywhere[0] > 0
    assert model.decode_step_coeffs(30)[1] == 0.0


def test_beyond_the_table_extrapolates_linearly_and_flags_once() -> None:
    model = load_measured(EXAMPLE)
    with pytest.warns(OutOfMeasuredRangeWarning, match="decode batch of 70") as caught:
        step = model.decode_step_time_s(70, 0)
        model.decode_step_time_s(90, 0)
        model.prefill_time_s([100])
    assert len([w for w in caught if issubclass(w.category, OutOfMeasuredRangeWarning)]) == 1
    assert step == pytest.approx((26.2 + (26.2 - 23.9)) / 1e3)


def test_prefill_interpolates_time_between_points(tmp_path: Path) -> None:
    model = load_measured(write(tmp_path, VALID))
    t1, t2 = 1024 / 20000, 6144 / 28300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.prefill_time_s([1024]) == pytest.approx(t1)
        assert model.prefill_time_s([3584]) == pytest.approx((t1 + t2) / 2)
        assert model.prefill_time_s([1024, 6144]) == pytest.approx(t1 + t2)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        times = [model.prefill_time_s([n]) for n in range(1, 20000, 97)]
    assert times == sorted(times)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("num_gpus: 8", "num_gpus: 0", "num_gpus"),
        ("tpot_ms: 16.4", "tpot_ms: 11.0", "decode.points[1].tpot_ms"),
        ("batch_size: 20", "batch_size: 10", "decode.points[1].batch_size"),
        (
            "max_throughput_tokens_per_s: 28300",
            "max_throughput_tokens_per_s: -1",
            "prefill.points[1].max_throughput_tokens_per_s",
        ),
        ("capacity_tokens: 600000", "capacity_tokenz: 600000", "kv.capacity_tokenz"),
        ("kv: {bytes_per_token: 70272, capacity_tokens: 600000}", "", "kv"),
        (
            "max_throughput_tokens_per_s: 20000",
            "max_throughput_tokens_per_s: 2000",
            "prefill.points[1].max_throughput_tokens_per_s",
        ),
        ("tpot_ms: 12.8", "tpot_ms: fast", "decode.points[0].tpot_ms"),
    ],
)
def test_invalid_file_names_the_field_and_the_file(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    with pytest.raises(InputFormatError) as err:
        load_measured(path)
    assert err.value.field == field
    assert str(path) in str(err.value)


def test_unparseable_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nprefill: [unclosed\n")
    with pytest.raises(InputFormatError) as err:
        load_measured(path)
    assert err.value.line is not None


def test_profile_argument_may_be_a_user_file(tmp_path: Path) -> None:
    model = get_profile(str(write(tmp_path, VALID)))
    assert isinstance(model, MeasuredCostModel) and model.name == "t"
