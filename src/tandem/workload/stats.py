"""Summary statistics of a workload (``tandem trace stats``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.workload.request import Workload


def _length_summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": float(values.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(values.max()),
    }


def workload_stats(w: Workload) -> dict[str, Any]:
    """Count, duration, mean rate, CV of inter-arrival times, and length percentiles."""
    arrivals = w.arrivals_s
    gaps = np.diff(arrivals)
    duration = float(arrivals[-1] - arrivals[0]) if arrivals.size > 1 else 0.0
    mean_gap = float(gaps.mean()) if gaps.size else 0.0
    return {
        "name": w.name,
        "num_requests": len(w),
        "duration_s": duration,
        "mean_rate_rps": w.rate_rps,
        "interarrival_cv": float(gaps.std() / mean_gap) if mean_gap > 0 else 0.0,
        "input_tokens": _length_summary(w.prompt_tokens),
        "output_tokens": _length_summary(w.output_tokens),
        "notes": list(w.notes),
    }
