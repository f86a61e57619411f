"""``--verify`` and ``--plot`` of ``tandem plan``: candidates around the analytic plan, checked
in the simulator, and SLO attainment against load.

1. The verification run is sized by duration (``verify.steady_run_length``): only requests
   arriving in a steady middle window are judged.
2. The cheapest pair the simulator accepts is found by coordinate search from the improved plan
   (``verify.cheapest_verified``); the paper's plan and the improved plan's neighbours are
   simulated too, so every candidate shows predicted against simulated figures.
3. Predicted attainment is the model's own: P(TTFT <= SLO) from the exponential-tail wait,
   times P(TPOT <= SLO) from the normal batch a request sees (``improved``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.plan.planner import Plan, PlanRequest, decode_model_for, prefill_model_for
from tandem.plan.verify import (
    MAX_REQUESTS,
    RunLength,
    SimCheck,
    SimCriteria,
    cheapest_verified,
    check,
    steady_run_length,
    verification_workload,
)
from tandem.workload.request import Workload

#: The attainment line drawn on the attainment plot (the 90% the goodput searches use).
PLOT_ATTAINMENT_LINE = 0.9
#: Load multipliers of the attainment plot, and its smaller runs (one per point).
PLOT_RATE_SCALES = (0.5, 0.75, 1.0, 1.125, 1.25, 1.5)
PLOT_MAX_REQUESTS = 4000


@dataclass(frozen=True)
class Candidate:
    """One simulated pair, with what the model predicted for it."""

    sim: SimCheck
    predicted_ttft_s: float
    predicted_tpot_s: float
    predicted_attainment: float


@dataclass(frozen=True)
class Verification:
    run: RunLength
    candidates: tuple[Candidate, ...]
    #: The cheapest pair the simulator accepts (``None``: none up to the search limit).
    best: tuple[int, int] | None


def predicted(req: PlanRequest, num_prefill: int, num_decode: int) -> tuple[float, float, float]:
    """The model's TTFT (mean or percentile), p-quantile TPOT and joint attainment."""
    pm = prefill_model_for(req)
    dm = decode_model_for(req, pm, num_prefill)
    per_instance = req.rate_rps * req.shape.mean_output_tokens / num_decode
    seen = dm.seen_batch(per_instance, num_decode)
    tpot = float("inf") if seen is None else dm.step_s(seen)
    ttft = pm.ttft_s(req.rate_rps, num_prefill)
    share = pm.attainment(req.rate_rps, num_prefill, req.ttft_slo_s) * dm.attainment(
        per_instance, num_decode, req.tpot_slo_s
    )
    return ttft, tpot, share


def _workload(req: PlanRequest, source: Workload | None, rate_rps: float, max_requests: int):  # noqa: ANN202
    run = steady_run_length(
        rate_rps, req.shape.mean_output_tokens * req.tpot_slo_s, max_requests=max_requests
    )
    w = verification_workload(
        rate_rps,
        run.num_requests,
        source=source,
        input_len=round(req.shape.mean_input_tokens),
        output_len=round(req.shape.mean_output_tokens),
    )
    return w, run


def criteria(req: PlanRequest) -> SimCriteria:
    return SimCriteria(
        req.ttft_slo_s,
        req.tpot_slo_s,
        req.ttft_percentile,
        req.tpot_quantile,
        req.max_batch_size,
        req.prefill_token_budget,
        req.chunk_tokens,
        req.prefix_cache_tokens,
    )


def verify_plan(
    plan: Plan, req: PlanRequest, source: Workload | None, max_requests: int | None = None
) -> Verification:
    """Simulate the candidates around ``plan`` and find the cheapest the simulator accepts."""
    w, run = _workload(req, source, req.rate_rps, max_requests or MAX_REQUESTS)
    crit = criteria(req)
    found = cheapest_verified(w, req.cost, crit, plan.num_prefill, plan.num_decode, window=run)
    done = {(c.num_prefill, c.num_decode): c for c in (found[2] if found else [])}
    extra = {
        (plan.num_prefill, plan.num_decode),
        (plan.paper.num_prefill, plan.paper.num_decode),
        (max(1, plan.num_prefill - 1), plan.num_decode),
        (plan.num_prefill, max(1, plan.num_decode - 1)),
    }
    for p, d in sorted(extra - done.keys()):
        if p >= 1 and d >= 1:
            done[p, d] = check(w, req.cost, p, d, crit, run)
    candidates = tuple(
        Candidate(c, *predicted(req, c.num_prefill, c.num_decode))
        for _, c in sorted(done.items(), key=lambda kv: (sum(kv[0]), kv[0][1]))
    )
    return Verification(run, candidates, (found[0], found[1]) if found else None)


def neighbours(num_prefill: int, num_decode: int) -> list[tuple[int, int]]:
    """The plan and its one-instance neighbours (P-1/D, P/D-1, P+1/D, P/D+1) that exist."""
    p, d = num_prefill, num_decode
    pairs = [(p, d), (p - 1, d), (p, d - 1), (p + 1, d), (p, d + 1)]
    return [(a, b) for a, b in pairs if a >= 1 and b >= 1]


def attainment_curves(
    req: PlanRequest,
    source: Workload | None,
    pairs: list[tuple[int, int]],
    scales: tuple[float, ...] = PLOT_RATE_SCALES,
    max_requests: int = PLOT_MAX_REQUESTS,
) -> dict[tuple[int, int], list[tuple[float, float, float]]]:
    """For each pair: ``(rate scale, simulated attainment, predicted attainment)`` per load."""
    from dataclasses import replace

    crit = criteria(req)
    curves: dict[tuple[int, int], list[tuple[float, float, float]]] = {pr: [] for pr in pairs}
    for scale in scales:
        scaled = replace(req, rate_rps=req.rate_rps * scale)
        w, run = _workload(scaled, source, scaled.rate_rps, max_requests)
        for p, d in pairs:
            sim = check(w, req.cost, p, d, crit, run)
            curves[p, d].append((scale, sim.attainment, predicted(scaled, p, d)[2]))
    return curves


def plot_attainment(
    req: PlanRequest,
    curves: dict[tuple[int, int], list[tuple[float, float, float]]],
    chosen: tuple[int, int],
    out: Path,
) -> None:
    """SLO attainment (share of judged requests meeting both SLOs) against load: simulated
    (solid) and predicted (dashed), the chosen plan drawn last, on top, thick and black (a
    neighbour with the same attainment used to hide it), and the 90% attainment line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.axhline(PLOT_ATTAINMENT_LINE, color="grey", lw=0.8, ls="-.", label="90% attainment")
    ordered = [pair for pair in curves if pair != chosen] + [chosen] * (chosen in curves)
    for pair in ordered:
        points = curves[pair]
        xs = [req.rate_rps * s for s, _, _ in points]
        if pair == chosen:
            style: dict[str, Any] = {"lw": 2.8, "color": "black", "zorder": 4, "marker": "s"}
            label = f"{pair[0]}P{pair[1]}D (plan)"
        else:
            style = {"lw": 1.2, "zorder": 2, "marker": "o", "alpha": 0.8}
            label = f"{pair[0]}P{pair[1]}D"
        (line,) = ax.plot(xs, [a for _, a, _ in points], label=label, **style)
        ax.plot(
            xs,
            [p for _, _, p in points],
            ls="--",
            lw=1.4 if pair == chosen else 0.9,
            color=line.get_color(),
            zorder=line.get_zorder(),
        )
    ax.axvline(req.rate_rps, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("load (requests/s); dotted: the requested rate")
    ax.set_ylabel("SLO attainment (TTFT and TPOT met)")
    ax.set_ylim(-0.02, 1.02)
    slo = f"TTFT {req.ttft_slo_s:g}s, TPOT {req.tpot_slo_s * 1e3:g}ms"
    ax.set_title(f"{req.shape.name}: {slo}; solid simulated, dashed predicted")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
