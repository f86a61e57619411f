"""Every shipped profile loads, answers, is monotone and linear in context."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tandem.perf.base import CostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.perf.registry import get_profile, list_profiles

NAMES = [p.name for p in list_profiles()]
MEASURED_SOURCES = ("splitwise", "vidur", "aiconfigurator", "distserve")


@pytest.fixture(autouse=True)
def _quiet_range_warnings():
    # The grids below go beyond some measured ranges on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        yield


def test_enough_measured_model_hardware_pairs_ship() -> None:
    """At least 6 model x hardware pairs from measurements, plus roofline ones."""
    infos = list_profiles()
    measured = {(p.model, p.hardware) for p in infos if p.source != "roofline"}
    assert len(measured) >= 6
    assert any(p.source == "roofline" for p in infos)
    for name in (
        "llama2-70b_h100_tp4",
        "llama3-8b_a100_tp1",
        "qwen2.5-7b_h100_tp1",
        "opt-13b_a100_tp1",
    ):
        assert name in NAMES
    for p in infos:
        assert p.source == "roofline" or any(s in p.source for s in MEASURED_SOURCES)


@pytest.mark.parametrize("name", NAMES)
def test_profile_loads_and_answers(name: str) -> None:
    model = get_profile(name)
    assert isinstance(model, CostModel) and model.name == name
    assert 0 < model.prefill_time_s([512]) < 10
    assert 0 < model.decode_step_time_s(8, 8 * 1024) < 1
    assert model.kv_capacity_tokens > 0 and model.kv_bytes_per_token > 0
    assert 0 < model.kv_transfer_time_s(1000) < 1


@pytest.mark.parametrize("name", NAMES)
def test_more_tokens_are_never_faster(name: str) -> None:
    """Prefill time never falls when a prompt grows or a prompt joins the batch."""
    model = get_profile(name)
    lens = [1, 16, 100, 255, 256, 257, 1000, 2047, 2048, 4095, 4096, 4097, 8192, 16384]
    times = [model.prefill_time_s([n]) for n in lens]
    assert times == sorted(times)
    batched = [model.prefill_time_s([512] * b) for b in range(1, 65)]
    assert batched == sorted(batched)


@pytest.mark.parametrize("name", NAMES)
def test_bigger_batch_is_never_faster_per_step(name: str) -> None:
    """At equal context per request, and at equal total context."""
    model = get_profile(name)
    for ctx in (128, 2048):
        steps = [model.decode_step_time_s(b, b * ctx) for b in range(1, 300)]
        assert steps == sorted(steps)
    fixed = [model.decode_step_time_s(b, 100_000) for b in range(1, 300)]
    assert fixed == sorted(fixed)


@pytest.mark.parametrize("name", NAMES)
def test_decode_step_is_linear_in_context_at_fixed_batch(name: str) -> None:
    """The simulator advances decode in closed form along this line."""
    model = get_profile(name)
    for batch in (1, 7, 64, 200):
        base, slope = model.decode_step_coeffs(batch)
        assert base >= 0 and slope >= 0
        for ctx in (0, 1000, 123_456):
            assert model.decode_step_time_s(batch, ctx) == pytest.approx(base + slope * ctx)


def test_reserve_override_changes_capacity_only() -> None:
    small = get_profile("llama3-8b_a100_tp1", activation_reserve_fraction=0.3)
    default = get_profile("llama3-8b_a100_tp1")
    assert small.kv_capacity_tokens < default.kv_capacity_tokens
    assert small.prefill_time_s([1000]) == default.prefill_time_s([1000])


def test_product_code_never_reads_the_raw_data_folder() -> None:
    """A user's clone has no /work/shared: the package ships everything it reads."""
    src = Path(__file__).resolve().parents[2] / "src" / "tandem"
    for path in src.rglob("*.py"):
        assert "/work/shared" not in path.read_text(encoding="utf-8"), path
