"""Accuracy of the capacity planner against the simulator.

For each scenario (profile x workload x SLO kind x load) it computes the paper's M/M/1 plan
and Tandem's improved plan, then searches the cheapest (N_P, N_D) the simulator accepts
(``tandem.plan.verify.cheapest_verified``, starting at the improved plan) on a limited number
of requests. "Meets the SLOs" in simulation: mean TTFT (or p90 TTFT for the p90 variant)
within the TTFT SLO, and the p90 of per-request TPOT within the TPOT SLO.

Steady state: each scenario's run is sized by duration (``verify.steady_run_length``): a
warm-up of 2 decode lifetimes (``L_out x TPOT``), a judged window of at least 8 lifetimes and
2,000 requests, and one lifetime of tail; only requests arriving in the window are judged.

    .venv/bin/python benchmarks/planner_accuracy.py [--num-scenarios 72] [--max-requests 30000]

Last line: ``mm1_exact=<rate> improved_exact=<rate> improved_max_under=<n>``.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

from tandem.perf.registry import get_profile
from tandem.plan.inputs import shape_from_means, shape_from_workload
from tandem.plan.planner import PlanRequest, make_plan, prefill_max_tokens_per_s
from tandem.plan.verify import SimCriteria, cheapest_verified, steady_run_length
from tandem.workload.synthetic import FixedLength, LognormalLength, synthetic_workload

PROFILES = (
    "llama3-8b_a100_tp1",
    "llama3-70b_h100_tp4",
    "qwen2.5-7b_h200_tp1",
    "examples/measured_deepseek_v3_h200.yaml",
)
# (name, mean input, mean output, lognormal CV or None for fixed lengths)
WORKLOADS = (("short", 1024, 256, None), ("long", 4096, 512, None), ("lognorm", 1024, 256, 1.0))
SLO_KINDS = ("mean", "p90")
LOAD_TARGETS = (2, 4, 7)  # paper-model prefill instances the load needs, roughly


def scenario_list() -> list[tuple[str, tuple, str, int]]:
    return list(itertools.product(PROFILES, WORKLOADS, SLO_KINDS, LOAD_TARGETS))


def run_scenario(profile: str, wl: tuple, kind: str, target: int, max_requests: int) -> dict:
    name, l_in, l_out, cv = wl
    cost = get_profile(profile)
    ctx = l_in + l_out / 2
    # SLOs relative to the hardware: TTFT 4x one prompt's prefill (>= 0.25 s) plus overhead;
    # TPOT 1.15x the step of a batch of 32 at the workload's context.
    alone_s = cost.prefill_time_s([l_in])
    ttft_s = max(4 * alone_s, 0.25) + cost.request_overhead_s() + cost.kv_transfer_time_s(l_in)
    tpot_s = 1.15 * cost.decode_step_time_s(32, round(32 * ctx))
    tp_max = prefill_max_tokens_per_s(cost, l_in, 8192)
    rate = target * (tp_max - l_in / (ttft_s - cost.kv_transfer_time_s(l_in))) / l_in
    if cv is None:
        lengths = (FixedLength(l_in), FixedLength(l_out))
    else:
        lengths = (LognormalLength(l_in, cv, 8 * l_in), LognormalLength(l_out, cv, 8 * l_out))
    run = steady_run_length(rate, l_out * tpot_s, max_requests=max_requests)
    w = synthetic_workload(
        num_requests=run.num_requests, rate_rps=rate, input_len=lengths[0], output_len=lengths[1]
    )
    shape = shape_from_means(l_in, l_out) if cv is None else shape_from_workload(w)
    pct = 90.0 if kind == "p90" else None
    plan = make_plan(PlanRequest(shape, rate, ttft_s, tpot_s, cost, ttft_percentile=pct))
    crit = SimCriteria(ttft_s, tpot_s, pct)
    found = cheapest_verified(w, cost, crit, plan.num_prefill, plan.num_decode, window=run)
    sim = (found[0], found[1]) if found else None
    return {
        "scenario": f"{profile.split('/')[-1]}|{name}|{kind}|x{target}",
        "paper": (plan.paper.num_prefill, plan.paper.num_decode),
        "improved": (plan.num_prefill, plan.num_decode),
        "sim": sim,
        "runs": len(found[2]) if found else 0,
        "requests": run.num_requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-scenarios", type=int, default=72)
    parser.add_argument("--max-requests", type=int, default=30000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    start = time.perf_counter()
    for sc in scenario_list()[: args.num_scenarios]:
        r = run_scenario(*sc, args.max_requests)
        rows.append(r)
        print(
            f"{r['scenario']:46s} paper={r['paper']} improved={r['improved']} sim={r['sim']} "
            f"n={r['requests']}",
            flush=True,
        )
    scored = [r for r in rows if r["sim"] is not None]

    def total(pair: tuple[int, int]) -> int:
        return pair[0] + pair[1]

    def stats(key: str) -> tuple[float, int, int, int]:
        exact = sum(r[key] == r["sim"] for r in scored)
        diffs = [total(r[key]) - total(r["sim"]) for r in scored]
        over = sum(d > 0 for d in diffs)
        under = sum(d < 0 for d in diffs)
        return exact / len(scored), over, under, max([-d for d in diffs] + [0])

    print(
        f"\n{len(rows)} scenarios, {len(scored)} with a simulated optimum, "
        f"{time.perf_counter() - start:.0f}s"
    )
    for key in ("paper", "improved"):
        rate, over, under, max_under = stats(key)
        print(f"{key:9s} exact={rate:.3f} over={over} under={under} max_under={max_under}")
    mm1, imp = stats("paper"), stats("improved")
    print(f"mm1_exact={mm1[0]:.3f} improved_exact={imp[0]:.3f} improved_max_under={imp[3]}")


if __name__ == "__main__":
    main()
