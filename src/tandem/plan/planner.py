"""The planner's entry point: the paper's plan and Tandem's improved plan for one request.

``PlanRequest`` holds the load, SLOs and knobs; ``make_plan`` returns a ``Plan`` with both the
paper's step-by-step numbers (``paper``) and the improved integer answer, which is the one
reported as ``num_prefill`` / ``num_decode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tandem.errors import ConfigError
from tandem.perf.base import CostModel
from tandem.perf.measured import DecodePoint, MeasuredCostModel, PrefillPoint
from tandem.plan.improved import (
    MAX_INSTANCES,
    DecodeModel,
    PrefillModel,
    decode_model,
    departure_cv2,
    min_decode,
    min_prefill,
    prefill_model,
    raw_prefill,
)
from tandem.plan.inputs import WorkloadShape
from tandem.plan.paper import PaperPlan, paper_plan
from tandem.plan.queueing import QUEUE_CS2

DISPATCH_MODES = ("shared", "split")


@dataclass(frozen=True)
class PlanRequest:
    """What to plan for. ``overhead_s=None``: the profile's request overhead plus the KV
    transfer of a mean prompt."""

    shape: WorkloadShape
    rate_rps: float
    ttft_slo_s: float
    tpot_slo_s: float
    cost: CostModel
    overhead_s: float | None = None
    ttft_percentile: float | None = None
    queue: str = "mg1"
    dispatch: str = "shared"
    tpot_quantile: float = 0.9
    max_batch_size: int = 256
    prefill_token_budget: int = 8192
    #: Chunked prefill in the verifying simulations (``tandem.sim.prefill``); the analytic
    #: models still treat prefill as whole prompts. ``None``: off.
    chunk_tokens: int | None = None
    #: Prefix caching in the verifying simulations (``ClusterConfig.prefix_cache_tokens``);
    #: the analytic models price every prompt whole. ``None``: off.
    prefix_cache_tokens: int | None = None

    def __post_init__(self) -> None:
        for label, value in (
            ("request rate", self.rate_rps),
            ("TTFT SLO", self.ttft_slo_s),
            ("TPOT SLO", self.tpot_slo_s),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{label} must be a positive number, got {value}")
        if self.overhead_s is not None and self.overhead_s < 0:
            raise ConfigError(f"overhead must be >= 0 s, got {self.overhead_s}")
        if self.ttft_percentile is not None and not 0 < self.ttft_percentile < 100:
            raise ConfigError(f"TTFT percentile must be in (0, 100), got {self.ttft_percentile}")
        if self.queue not in QUEUE_CS2:
            raise ConfigError(f"unknown queue model '{self.queue}'; known: mm1, md1, mg1")
        if self.dispatch not in DISPATCH_MODES:
            raise ConfigError(f"unknown dispatch model '{self.dispatch}'; known: shared, split")
        if not 0 < self.tpot_quantile < 1:
            raise ConfigError(f"TPOT quantile must be in (0, 1), got {self.tpot_quantile}")
        if self.max_batch_size < 1 or self.prefill_token_budget < 1:
            raise ConfigError("max batch size and prefill token budget must be >= 1")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ConfigError(f"chunk tokens must be >= 1, got {self.chunk_tokens}")
        if self.prefix_cache_tokens is not None and self.prefix_cache_tokens < 1:
            raise ConfigError(f"prefix cache tokens must be >= 1, got {self.prefix_cache_tokens}")

    @property
    def total_tokens_per_s(self) -> float:
        return self.rate_rps * self.shape.tokens_per_request

    def resolved_overhead_s(self) -> float:
        if self.overhead_s is not None:
            return self.overhead_s
        l_in = round(self.shape.mean_input_tokens)
        return self.cost.request_overhead_s() + self.cost.kv_transfer_time_s(l_in)


@dataclass(frozen=True)
class Plan:
    """The answer: the improved integers plus the paper's calculation."""

    num_prefill: int
    num_decode: int
    raw_num_prefill: float
    raw_num_decode: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    decode_batch_size: int
    pd_ratio: float
    feasible: bool
    reason: str | None
    predicted_ttft_s: float
    predicted_decode_batch: float
    paper: PaperPlan


def prefill_max_tokens_per_s(cost: CostModel, input_len_tokens: float, budget_tokens: int) -> float:
    """Max prefill throughput at this prompt length: as many prompts as fit the batch budget."""
    n = max(1, round(input_len_tokens))
    k = max(1, budget_tokens // n)
    return k * n / cost.prefill_time_s([n] * k)


def paper_for(req: PlanRequest) -> PaperPlan:
    shape, cost = req.shape, req.cost
    ctx = shape.mean_input_tokens + shape.mean_output_tokens / 2.0
    return paper_plan(
        total_tokens_per_s=req.total_tokens_per_s,
        input_len_tokens=shape.mean_input_tokens,
        output_len_tokens=shape.mean_output_tokens,
        ttft_slo_s=req.ttft_slo_s,
        tpot_slo_s=req.tpot_slo_s,
        prefill_max_tokens_per_s=prefill_max_tokens_per_s(
            cost, shape.mean_input_tokens, req.prefill_token_budget
        ),
        overhead_s=req.resolved_overhead_s(),
        tpot_at=lambda b: cost.decode_step_time_s(b, round(b * ctx)),
    )


def prefill_model_for(req: PlanRequest) -> PrefillModel:
    """The improved prefill model of a request (queue, batching, hand-off to decode)."""
    # The KV copy starts at a decode step boundary: half a step on average, at most the step
    # of the largest batch meeting the TPOT SLO.
    probe = decode_model(
        req.cost, req.shape, max_batch_size=req.max_batch_size, tpot_quantile=req.tpot_quantile
    )
    best = probe.best_batch(req.tpot_slo_s)
    return prefill_model(
        req.cost,
        req.shape,
        queue=req.queue,
        dispatch=req.dispatch,
        ttft_quantile=None if req.ttft_percentile is None else req.ttft_percentile / 100.0,
        overhead_s=req.resolved_overhead_s(),
        token_budget=req.prefill_token_budget,
        handoff_s=probe.step_s(best) / 2.0 if best else 0.0,
    )


def decode_model_for(req: PlanRequest, pm: PrefillModel, num_prefill: int | None) -> DecodeModel:
    """The improved decode model, fed by the stream leaving ``num_prefill`` instances."""
    return decode_model(
        req.cost,
        req.shape,
        max_batch_size=req.max_batch_size,
        tpot_quantile=req.tpot_quantile,
        stream_cv2=(
            departure_cv2(pm, req.rate_rps, num_prefill) if num_prefill else pm.arrival_cv2
        ),
    )


def make_plan(req: PlanRequest) -> Plan:
    """Both plans; infeasible SLOs give ``feasible=False`` with the reason."""
    paper = paper_for(req)
    quantile = None if req.ttft_percentile is None else req.ttft_percentile / 100.0
    pm = prefill_model_for(req)
    reasons: list[str] = []
    n_p = min_prefill(pm, req.rate_rps, req.ttft_slo_s)
    dm = decode_model_for(req, pm, n_p)
    what = "mean" if quantile is None else f"p{req.ttft_percentile:g}"
    if n_p is None and pm.floor_s() >= req.ttft_slo_s:
        reasons.append(
            f"TTFT SLO {req.ttft_slo_s:g}s is not above the {what} TTFT with no queueing "
            f"({pm.floor_s():.3g}s = overhead {pm.overhead_s:.3g}s + prefill): infeasible"
        )
    elif n_p is None:  # the SLO can be met, but not by any count the search tries
        reasons.append(
            f"the {what} TTFT SLO {req.ttft_slo_s:g}s at {req.rate_rps:.3g} requests/s needs "
            f"more than {MAX_INSTANCES:,} prefill instances (the planner's search limit)"
        )
    out_tokens_per_s = req.rate_rps * req.shape.mean_output_tokens
    n_d = min_decode(dm, out_tokens_per_s, req.tpot_slo_s)
    batch = dm.best_batch(req.tpot_slo_s)
    if n_d is None:
        if dm.batch_cap < 1:
            reasons.append("a request's prompt plus output does not fit one instance's KV cache")
        elif dm.step_s(1.0) > req.tpot_slo_s:
            reasons.append(
                f"TPOT SLO {req.tpot_slo_s * 1e3:g}ms is below the decode step of a batch of "
                f"one ({dm.step_s(1.0) * 1e3:.3g}ms): infeasible"
            )
        else:
            reasons.append(
                f"the TPOT SLO {req.tpot_slo_s * 1e3:g}ms at {req.rate_rps:.3g} requests/s "
                f"needs more than {MAX_INSTANCES:,} decode instances (the planner's search "
                "limit)"
            )
    tp_prefill = (
        req.rate_rps * req.shape.mean_input_tokens / raw_prefill(pm, req.rate_rps, req.ttft_slo_s)
        if n_p is not None
        else 0.0
    )
    tp_decode = batch / dm.step_s(batch) if batch > 0 else 0.0
    feasible = not reasons
    raw_p = req.rate_rps * req.shape.mean_input_tokens / tp_prefill if tp_prefill else math.inf
    raw_d = out_tokens_per_s / tp_decode if tp_decode else math.inf
    seen = dm.seen_batch(out_tokens_per_s / n_d, n_d) if n_d else None
    return Plan(
        num_prefill=n_p or 0,
        num_decode=n_d or 0,
        raw_num_prefill=raw_p,
        raw_num_decode=raw_d,
        prefill_tokens_per_s=tp_prefill,
        decode_tokens_per_s=tp_decode,
        decode_batch_size=batch,
        pd_ratio=(n_p / n_d) if (n_p and n_d) else math.nan,
        feasible=feasible,
        reason="; ".join(reasons) or None,
        predicted_ttft_s=pm.ttft_s(req.rate_rps, n_p) if n_p else math.inf,
        predicted_decode_batch=seen if seen is not None else math.nan,
        paper=paper,
    )


def table_cost_model(
    *,
    input_len_tokens: float,
    prefill_max_tokens_per_s: float,
    overhead_s: float,
    tpot_points: tuple[tuple[int, float], ...],
) -> MeasuredCostModel:
    """A cost model from the paper's three numbers given on the command line. KV capacity is
    unbounded and KV transfer free: the paper's overhead already counts the transfer."""
    if not prefill_max_tokens_per_s > 0:
        raise ConfigError(
            f"maximum prefill throughput must be > 0 tokens/s, got {prefill_max_tokens_per_s}"
        )
    return MeasuredCostModel(
        name="command-line tables",
        model="?",
        hardware="?",
        num_gpus=1,
        prefill_points=(PrefillPoint(max(1, round(input_len_tokens)), prefill_max_tokens_per_s),),
        overhead_s=overhead_s,
        tpot_points=tuple(DecodePoint(b, t) for b, t in tpot_points),
        kv_bytes_per_token=0,
        kv_capacity_tokens=10**12,
        link_latency_s=0.0,
    )
