"""Schema of the built-in profile files (``tandem/perf/profiles/*.json``) and the cost model
each one describes.

``scripts/build_profiles.py`` writes them from the raw measurements; the package reads only
these files. A ``fitted`` profile carries closed-form coefficients (``FittedCostModel``), the
measured range, and the held-out measured points its fit was judged on; a ``roofline`` profile
carries only the instance and the efficiency factors (``RooflineCostModel``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from tandem.errors import ConfigError
from tandem.perf._loading import StrictModel, validate
from tandem.perf.base import CostModel
from tandem.perf.fitted import DecodeSegment, FittedCostModel, PrefillSegment
from tandem.perf.instance import DEFAULT_ACTIVATION_RESERVE_FRACTION, InstanceSpec
from tandem.perf.ranges import MeasuredRange
from tandem.perf.roofline import RooflineCostModel, RooflineEfficiency
from tandem.perf.specs import get_hardware, get_model

PROFILE_FORMAT = "tandem-profile/1"
_EFF = RooflineEfficiency()  # the stated defaults


class PrefillSegmentIn(StrictModel):
    min_batch_tokens: PositiveInt
    base_s: NonNegativeFloat
    per_token_s: NonNegativeFloat
    per_token_sq_s: NonNegativeFloat


class DecodeSegmentIn(StrictModel):
    min_batch_size: PositiveInt
    base_s: NonNegativeFloat
    per_request_s: NonNegativeFloat
    per_context_token_s: NonNegativeFloat


class CoefficientsIn(StrictModel):
    prefill: list[PrefillSegmentIn] = Field(min_length=1)
    decode: list[DecodeSegmentIn] = Field(min_length=1)


class RangeIn(StrictModel):
    max_prompt_tokens: PositiveInt | None = None
    max_prefill_batch_tokens: PositiveInt | None = None
    min_decode_batch_size: PositiveInt | None = None
    max_decode_batch_size: PositiveInt | None = None
    max_context_tokens_per_request: PositiveInt | None = None


class HeldOutPoint(StrictModel):
    """One measured iteration kept out of the fit. Prefill: ``batch_size`` prompts of
    ``prompt_len_tokens``; decode: ``batch_size`` requests holding ``total_context_tokens``."""

    phase: Literal["prefill", "decode"]
    batch_size: PositiveInt
    prompt_len_tokens: PositiveInt | None = None
    total_context_tokens: PositiveInt | None = None
    measured_s: float = Field(gt=0)


class ScaleIn(StrictModel):
    """Measured / operator-sum time ratio per phase, and the instance it was measured on."""

    prefill: float = Field(gt=0)
    decode: float = Field(gt=0)
    origin: str


class FitIn(StrictModel):
    """How a fitted profile was made and the measured points that judge it."""

    #: What the held-out points are: whole-iteration measurements, or operator sums.
    reference: str
    reference_kind: Literal["whole_iteration", "operator_sum"]
    method: str
    num_fit_points: int = Field(ge=0)
    held_out: list[HeldOutPoint] = Field(default_factory=list)
    #: Measured points left out as physically inconsistent (kept for transparency).
    excluded: list[HeldOutPoint] = Field(default_factory=list)
    #: The same form fitted to operator sums alone, before any correction (for comparison).
    uncorrected: CoefficientsIn | None = None
    #: Median measured / operator-sum ratio on the training points (whole-iteration profiles).
    operator_sum_ratio: dict[str, float] | None = None
    #: The ratio applied to operator sums (operator-sum profiles).
    scale: ScaleIn | None = None


class RooflineEfficiencyIn(StrictModel):
    matmul_flops: float = Field(default=_EFF.matmul_flops, gt=0.0, le=1.0)
    attention_flops: float = Field(default=_EFF.attention_flops, gt=0.0, le=1.0)
    memory_bandwidth: float = Field(default=_EFF.memory_bandwidth, gt=0.0, le=1.0)
    link_bandwidth: float = Field(default=_EFF.link_bandwidth, gt=0.0, le=1.0)
    all_reduce_latency_s: NonNegativeFloat = _EFF.all_reduce_latency_s
    iteration_overhead_s: NonNegativeFloat = _EFF.iteration_overhead_s


class ProfileDocument(StrictModel):
    """One built-in profile file."""

    format: Literal["tandem-profile/1"]
    name: str = Field(min_length=1)
    kind: Literal["fitted", "roofline"]
    model: str
    hardware: str
    tensor_parallel: PositiveInt
    source: str
    description: str = ""
    activation_reserve_fraction: float = Field(
        default=DEFAULT_ACTIVATION_RESERVE_FRACTION, ge=0.0, lt=1.0
    )
    coefficients: CoefficientsIn | None = None
    measured_range: RangeIn = Field(default_factory=RangeIn)
    roofline_efficiency: RooflineEfficiencyIn = Field(default_factory=RooflineEfficiencyIn)
    fit: FitIn | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _coefficients_present(self) -> ProfileDocument:
        if self.kind == "fitted" and self.coefficients is None:
            raise ValueError("coefficients: required for a fitted profile")
        return self


def parse_profile(data: dict, label: str | Path) -> ProfileDocument:
    """Validate a parsed profile mapping; errors name the file and the field."""
    return validate(ProfileDocument, data, label)


def instance_of(doc: ProfileDocument, activation_reserve_fraction: float | None) -> InstanceSpec:
    reserve = doc.activation_reserve_fraction
    if activation_reserve_fraction is not None:
        reserve = activation_reserve_fraction
    return InstanceSpec(
        get_model(doc.model), get_hardware(doc.hardware), doc.tensor_parallel, reserve
    )


def fitted_model(
    name: str, instance: InstanceSpec, coeffs: CoefficientsIn, measured_range: RangeIn
) -> FittedCostModel:
    return FittedCostModel(
        name=name,
        instance=instance,
        prefill_segments=tuple(
            PrefillSegment(p.min_batch_tokens, p.base_s, p.per_token_s, p.per_token_sq_s)
            for p in coeffs.prefill
        ),
        decode_segments=tuple(
            DecodeSegment(s.min_batch_size, s.base_s, s.per_request_s, s.per_context_token_s)
            for s in coeffs.decode
        ),
        measured_range=MeasuredRange(**measured_range.model_dump()),
    )


def build_cost_model(
    doc: ProfileDocument, activation_reserve_fraction: float | None = None
) -> CostModel:
    """The cost model a profile document describes."""
    instance = instance_of(doc, activation_reserve_fraction)
    if doc.kind == "roofline":
        efficiency = RooflineEfficiency(**doc.roofline_efficiency.model_dump())
        return RooflineCostModel(doc.name, instance, efficiency)
    if doc.coefficients is None:  # excluded by the schema; kept for the type checker
        raise ConfigError(f"fitted profile '{doc.name}' has no coefficients")
    return fitted_model(doc.name, instance, doc.coefficients, doc.measured_range)
