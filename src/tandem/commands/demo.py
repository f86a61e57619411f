"""``tandem demo``: the main job on embedded defaults, as one story.

1. The embedded workloads' statistics.
2. A capacity plan for the ServeGen DeepSeek-R1 reasoning workload on Llama-3-8B/A100 (the
   paper's steps and the improved plan): 3P12D for its 17 req/s under ttft=5s,tpot=100ms.
3. Traffic outgrows that plan: ``DEMO_GROWTH`` (1.5x) its rate, 600 s of arrivals, before the
   decode instances the planner would now ask for arrive. On the planned cluster as it stands
   prefill runs out first (one round-robin run says how badly), and no decode policy shortens a
   prefill queue, so the comparison takes the planner's prefill count for the grown rate (one
   instance more) and keeps the plan's decode instances. There decode KV memory binds, and each
   decode policy runs once on the same workload, profile and SLO as the plan: round-robin,
   least current KV, Llumnix-style migration, and ARES with predictions from the measured error
   model. A table and one line say how much of the traffic each keeps within the SLOs.
4. Real serving, the same plan -> serve -> measure -> simulate loop in miniature: the embedded
   stories260K served by ``tandem serve`` (Ray workers by default), its profile measured
   through HTTP, a plan for a short burst from that profile, the burst sent, and the
   simulator's TTFT / TPOT for the same requests beside the measured ones.
"""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
import warnings
from typing import Any

import typer

from tandem.commands._output import print_table
from tandem.commands.experiment import policy_table
from tandem.commands.plan import DEMO_PROFILE, DEMO_SLO, DEMO_WORKLOAD, print_demo_plan
from tandem.commands.trace import print_stats_table
from tandem.experiments.rescheduling import Setup, config_for, row
from tandem.metrics.serving import parse_slo
from tandem.plan.planner import Plan, PlanRequest, make_plan
from tandem.sim import simulate
from tandem.workload import EMBEDDED, Workload, load_workload
from tandem.workload.stats import workload_stats

#: How far traffic outgrows the plan in the policy comparison: at 1.5x the plan's 12 decode
#: instances run out of KV memory and the policies part (round-robin below 90% of requests
#: meeting the SLOs, ARES above), while the planner's prefill for that rate keeps up.
DEMO_GROWTH = 1.5
#: Seconds of arrivals the comparison replays (a fixed window: the experiment's steady window
#: would be 1,500 s for servegen-r1, too slow for a demo).
DEMO_WINDOW_S = 600.0
DEMO_POLICIES = ("round-robin", "least-kv", "llumnix", "ares")


def _echo(text: str) -> None:
    """One paragraph, wrapped to the terminal (at most 100 columns)."""
    width = min(100, shutil.get_terminal_size().columns)
    typer.echo(textwrap.fill(text, width=width, break_on_hyphens=False))


def _run(workload: Workload, setup: Setup, policy: str) -> dict[str, Any]:
    with warnings.catch_warnings():  # a few long prompts exceed the measured range
        warnings.simplefilter("ignore")
        result = simulate(workload, config_for(setup, policy))
    return row(result, setup.slo, workload.rate_rps)


def print_policy_comparison(trace: Workload, plan: Plan, req: PlanRequest) -> tuple[int, int]:
    """The plan's cluster under ``DEMO_GROWTH`` times the traffic it was sized for: which decode
    policy carries it. Returns the compared cluster's (prefill, decode) instance counts."""
    planned = f"{plan.num_prefill}P{plan.num_decode}D"
    setup = Setup(
        trace, req.cost, plan.num_prefill, plan.num_decode, parse_slo(DEMO_SLO), DEMO_WINDOW_S
    )
    workload = setup.at(DEMO_GROWTH)
    rate = workload.rate_rps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grown = make_plan(dataclasses.replace(req, rate_rps=rate))
    story = (
        f"Traffic outgrows the plan: {DEMO_GROWTH:g}x the trace's rate arrives ({rate:.1f} req/s "
        f"over {DEMO_WINDOW_S:.0f} s), and the planner now asks for "
        f"{grown.num_prefill}P{grown.num_decode}D, but {planned} is what runs."
    )
    num_prefill = max(plan.num_prefill, grown.num_prefill)
    if num_prefill > plan.num_prefill:
        check = _run(workload, setup, "round-robin")
        extra_p = num_prefill - plan.num_prefill
        more = "prefill instance" if extra_p == 1 else f"{extra_p} prefill instances"
        story += (
            f" On {planned} as planned, prefill runs out first: {check['slo_attainment']:.0%} of "
            f"requests meet the SLOs (round-robin, P99 TTFT {check['p99_ttft_ms'] / 1e3:.0f} s), "
            f"and no decode policy shortens a prefill queue. So add the {more} the planner asks "
            f"for"
        )
        extra_d = grown.num_decode - plan.num_decode
        if extra_d > 0:
            story += (
                f" and keep the plan's {plan.num_decode} decode instances (the {extra_d} more it "
                f"asks for are the costly part)"
            )
        story += "."
        setup = dataclasses.replace(setup, num_prefill=num_prefill)
    cluster = f"{setup.num_prefill}P{setup.num_decode}D"
    story += (
        f" On {cluster}, decode KV memory binds: how much of the traffic does each decode "
        f"policy keep within the SLOs?"
    )
    _echo(story)
    by_policy = {policy: _run(workload, setup, policy) for policy in DEMO_POLICIES}
    policies, rows = policy_table(by_policy)
    print_table(
        f"{DEMO_WORKLOAD}, {len(workload):,} requests at {rate:.1f} req/s "
        f"({DEMO_GROWTH:g}x the trace's) on {cluster} {DEMO_PROFILE}, "
        f"SLO {DEMO_SLO}: decode policies",
        ["", *policies],
        rows,
    )
    met = {p: by_policy[p]["slo_attainment"] for p in DEMO_POLICIES}
    best = max(met, key=lambda p: met[p])
    _echo(
        f"At {rate:.1f} req/s on {cluster}, {best} keeps {met[best]:.0%} of requests within the "
        f"SLOs and round-robin {met['round-robin']:.0%}, against the 90% the plan aims for: on "
        f"the plan's {setup.num_decode} decode instances, the decode policy decides whether the "
        f"grown traffic is served."
        if best != "round-robin"
        else f"At {rate:.1f} req/s on {cluster}, round-robin keeps {met[best]:.0%} of requests "
        f"within the SLOs, as well as any decode policy here."
    )
    return setup.num_prefill, setup.num_decode


def demo(
    serve_backend: str = typer.Option(
        "ray", help="Backend of the real-serving part: 'ray' or 'local' (in-process, faster)."
    ),
    serve_requests: int = typer.Option(
        32, min=1, help="Concurrent requests sent to the real server."
    ),
) -> None:
    """Run the main job on embedded defaults: workload stats, a plan, the planned cluster's
    decode policies under grown traffic, then a short burst against the real server."""
    workloads = {name: load_workload(name) for name in EMBEDDED}
    print_stats_table([workload_stats(w) for w in workloads.values()])
    typer.echo("")
    plan, req = print_demo_plan()
    typer.echo("")
    print_policy_comparison(workloads[DEMO_WORKLOAD], plan, req)
    typer.echo("")
    _echo(
        "The plan and the comparison come from measured profiles and the simulator. Last, the "
        "same loop on a real server in miniature: serve a model, measure its profile, plan a "
        "burst from it, send the burst, and set the simulator's TTFT / TPOT beside the measured."
    )
    from tandem.commands.demo_serve import print_served_burst

    print_served_burst(serve_backend, serve_requests)
