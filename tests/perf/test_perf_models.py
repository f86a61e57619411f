"""Roofline arithmetic and the non-negative relative least squares used by every fit."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.perf.fitting import abs_pct_errors, fit_nonneg_relative
from tandem.perf.instance import InstanceSpec
from tandem.perf.roofline import RooflineCostModel, RooflineEfficiency
from tandem.perf.specs import get_hardware, get_model


def roofline(model: str = "llama3-8b", hw: str = "h100", tp: int = 1) -> RooflineCostModel:
    return RooflineCostModel("r", InstanceSpec(get_model(model), get_hardware(hw), tp))


def test_decode_at_batch_one_is_bounded_by_reading_the_weights() -> None:
    """One step reads every weight once: at least bytes / (bandwidth x efficiency)."""
    m = roofline()
    weights_s = get_model("llama3-8b").weight_bytes / (3.35e12 * 0.8)
    assert m.decode_step_time_s(1, 0) >= weights_s
    assert m.decode_step_time_s(1, 0) < 2 * weights_s + 0.01


def test_long_prefill_is_compute_bound() -> None:
    """At 8K tokens the projections cost 2 FLOPs per parameter per token at the stated MFU."""
    m = roofline()
    flops = 2 * 8192 * get_model("llama3-8b").matmul_params_per_layer * 32
    assert m.prefill_time_s([8192]) >= flops / (989e12 * 0.6)


def test_per_context_token_cost_is_the_kv_read() -> None:
    m = roofline()
    _, slope = m.decode_step_coeffs(8)
    assert slope == pytest.approx(128 * 1024 / (3.35e12 * 0.8))


def test_efficiency_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(Exception, match="matmul_flops"):
        RooflineEfficiency(matmul_flops=1.5)


def test_tensor_parallel_speeds_up_but_adds_all_reduce() -> None:
    tp1, tp2 = roofline("llama3-70b", "h200", 2), roofline("llama3-70b", "h200", 4)
    assert tp2.prefill_time_s([4096]) < tp1.prefill_time_s([4096])


def test_nonneg_fit_recovers_exact_coefficients() -> None:
    x = np.column_stack([np.ones(20), np.arange(1, 21), np.arange(1, 21) ** 2])
    y = x @ np.array([3.0, 0.5, 0.01])
    assert fit_nonneg_relative(x, y) == pytest.approx([3.0, 0.5, 0.01])


def test_nonneg_fit_never_returns_a_negative_coefficient() -> None:
    x = np.column_stack([np.ones(10), np.arange(10.0)])
    y = 10.0 - 0.5 * np.arange(10.0)  # falling: the best non-negative slope is 0
    coef = fit_nonneg_relative(x, y)
    assert coef.min() >= 0 and coef[1] == 0.0


def test_abs_pct_errors() -> None:
    assert abs_pct_errors([110, 90], [100, 100]).tolist() == [10.0, 10.0]
