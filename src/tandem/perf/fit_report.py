"""How well each built-in profile predicts measured points that were held out of its fit.

For every fitted profile the report compares the profile's prediction with each held-out point
stored in the profile file (``fit.held_out``) and gives the mean and max absolute percentage
error. Two kinds of reference exist:

- ``whole_iteration``: real measured iteration times (SplitwiseSim). The figure that matters.
  For these the report also gives the error of the uncorrected operator-sum form (what the
  kernels alone predict) and of the roofline model on the same points.
- ``operator_sum``: sums of measured kernels at held-out batch shapes. This judges only how
  well the closed form follows the kernel sums, not how close kernel sums are to real runs.

Profiles with no stored points (DistServe's published coefficients, roofline) are listed as
skipped with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from tandem.perf.base import CostModel
from tandem.perf.fitting import abs_pct_errors
from tandem.perf.profile_file import (
    HeldOutPoint,
    ProfileDocument,
    build_cost_model,
    fitted_model,
    instance_of,
)
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.perf.registry import profile_documents
from tandem.perf.roofline import RooflineCostModel


@dataclass(frozen=True, slots=True)
class ProfileFit:
    """Held-out error of one profile (percent)."""

    name: str
    source: str
    reference_kind: str
    num_points: int
    mean_abs_pct_error: float
    max_abs_pct_error: float
    prefill_mean_abs_pct_error: float | None
    decode_mean_abs_pct_error: float | None
    uncorrected_mean_abs_pct_error: float | None = None
    roofline_mean_abs_pct_error: float | None = None


@dataclass(frozen=True, slots=True)
class FitReport:
    """Per-profile errors and the pooled figure on SplitwiseSim's measured iterations."""

    profiles: tuple[ProfileFit, ...]
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def splitwise_mean_abs_pct_error(self) -> float | None:
        """Mean over every held-out whole-iteration point, all profiles pooled."""
        errors: list[float] = []
        total = 0
        for p in self.profiles:
            if p.reference_kind == "whole_iteration":
                errors.append(p.mean_abs_pct_error * p.num_points)
                total += p.num_points
        return sum(errors) / total if total else None

    def to_json(self) -> dict:
        return {
            "profiles": [asdict(p) for p in self.profiles],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "splitwise_mean_abs_pct_error": self.splitwise_mean_abs_pct_error,
        }


def predict_points(model: CostModel, points: Sequence[HeldOutPoint]) -> np.ndarray:
    """The model's time for each held-out point (seconds); range warnings are silenced because
    a report asks about the measured points themselves."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        for p in points:
            if p.phase == "prefill":
                out.append(model.prefill_time_s([p.prompt_len_tokens or 0] * p.batch_size))
            else:
                out.append(model.decode_step_time_s(p.batch_size, p.total_context_tokens or 0))
    return np.array(out)


def _mean_error(model: CostModel, points: Sequence[HeldOutPoint]) -> float | None:
    if not points:
        return None
    measured = [p.measured_s for p in points]
    return float(abs_pct_errors(predict_points(model, points), measured).mean())


def profile_fit(doc: ProfileDocument) -> ProfileFit | None:
    """The held-out error of one profile, or ``None`` if it stores no held-out points."""
    if doc.fit is None or not doc.fit.held_out:
        return None
    points = doc.fit.held_out
    model = build_cost_model(doc)
    errors = abs_pct_errors(predict_points(model, points), [p.measured_s for p in points])
    uncorrected = roofline = None
    if doc.fit.reference_kind == "whole_iteration":
        instance = instance_of(doc, None)
        if doc.fit.uncorrected is not None:
            raw = fitted_model(doc.name, instance, doc.fit.uncorrected, doc.measured_range)
            uncorrected = _mean_error(raw, points)
        roofline = _mean_error(RooflineCostModel(doc.name, instance), points)
    return ProfileFit(
        name=doc.name,
        source=doc.source,
        reference_kind=doc.fit.reference_kind,
        num_points=len(points),
        mean_abs_pct_error=float(errors.mean()),
        max_abs_pct_error=float(errors.max()),
        prefill_mean_abs_pct_error=_mean_error(model, [p for p in points if p.phase == "prefill"]),
        decode_mean_abs_pct_error=_mean_error(model, [p for p in points if p.phase == "decode"]),
        uncorrected_mean_abs_pct_error=uncorrected,
        roofline_mean_abs_pct_error=roofline,
    )


def fit_report() -> FitReport:
    """The fit report of every built-in profile."""
    fits: list[ProfileFit] = []
    skipped: list[tuple[str, str]] = []
    for doc in profile_documents():
        fit = profile_fit(doc)
        if fit is not None:
            fits.append(fit)
        elif doc.kind == "roofline":
            skipped.append((doc.name, "roofline: not fitted, no measured points"))
        else:
            skipped.append(
                (
                    doc.name,
                    "no held-out points stored (coefficients published without their measurements)",
                )
            )
    return FitReport(tuple(fits), tuple(skipped))
