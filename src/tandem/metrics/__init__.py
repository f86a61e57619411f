"""Serving metrics (vLLM definitions): TTFT, TPOT, ITL, E2E, SLO attainment, goodput."""

from tandem.metrics.serving import (
    SLO,
    RequestRecord,
    compute_metrics,
    compute_metrics_arrays,
    parse_slo,
)

__all__ = ["SLO", "RequestRecord", "compute_metrics", "compute_metrics_arrays", "parse_slo"]
