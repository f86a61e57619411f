"""``tandem plan``: how many prefill and decode instances meet the SLOs at a load.

Shows the paper's calculation step by step (Li et al., arXiv 2603.04716), then Tandem's
improved answer (queueing with the real length distribution, percentile TTFT, context-aware
decode), and with ``--verify`` what the simulator says about the candidates.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import typer

from tandem.commands._chunked import HELP as CHUNK_HELP
from tandem.commands._chunked import NAMES as CHUNK_NAMES
from tandem.commands._output import plot_path, print_json, print_mapping, print_table
from tandem.commands._prefix_cache import HELP as PREFIX_HELP
from tandem.commands._prefix_cache import NAME as PREFIX_NAME
from tandem.commands._prefix_cache import checked as checked_prefix_cache
from tandem.commands._synthetic import HELP as RANDOM_HELP
from tandem.commands._synthetic import RandomFlags, wants_random
from tandem.errors import ConfigError
from tandem.metrics.serving import SLO_HELP, parse_slo
from tandem.perf.base import CostModel
from tandem.plan.inputs import (
    WorkloadShape,
    parse_duration_s,
    parse_rate,
    parse_throughput,
    parse_tpot_table,
    shape_from_means,
    shape_from_workload,
    workload_rate_rps,
)
from tandem.plan.planner import Plan, PlanRequest, make_plan, table_cost_model
from tandem.workload.request import Workload


def _shape(
    workload: str | None,
    input_len: float | None,
    output_len: float | None,
    flags: RandomFlags | None = None,
    seed: int = 0,
) -> tuple[WorkloadShape, Workload | None]:
    if flags is not None and wants_random(workload, flags):
        if input_len is not None or output_len is not None:
            raise ConfigError("give either -w random or --input-len/--output-len, not both")
        w = flags.workload(seed)
        return shape_from_workload(w), w
    if workload is not None:
        if input_len is not None or output_len is not None:
            raise ConfigError("give either --workload or --input-len/--output-len, not both")
        from tandem.workload import load_workload

        w = load_workload(workload)
        return shape_from_workload(w), w
    if input_len is None or output_len is None:
        raise ConfigError("give --workload, or both --input-len and --output-len")
    return shape_from_means(input_len, output_len), None


def _rate(
    throughput: str | None,
    rate: str | None,
    shape: WorkloadShape,
    w: Workload | None,
    request_rate: float | None = None,
) -> float:
    if throughput is not None and rate is not None:
        raise ConfigError("give either --throughput or --rate, not both")
    if rate is None and throughput is None and request_rate is not None:
        if math.isinf(request_rate):
            raise ConfigError("plan needs a finite load: --request-rate R, --rate or --throughput")
        return request_rate
    if throughput is not None:
        return parse_throughput(throughput) / shape.tokens_per_request
    if rate is not None:
        return parse_rate(rate)
    if w is not None:
        return workload_rate_rps(w)
    raise ConfigError("give the load: --throughput 5M/min or --rate 10rps")


def _cost(
    profile: str | None,
    measured: Path | None,
    prefill_max: float | None,
    tpot_table: str | None,
    overhead_s: float | None,
    shape: WorkloadShape,
) -> CostModel:
    given = [x is not None for x in (profile, measured, prefill_max)]
    if sum(given) != 1:
        raise ConfigError(
            "give exactly one of --profile, --measured, or --prefill-max-throughput with "
            "--tpot-table"
        )
    if profile is not None or measured is not None:
        from tandem.perf.registry import get_profile, load_cost_model_file

        return get_profile(profile) if profile is not None else load_cost_model_file(measured)  # type: ignore[arg-type]
    if tpot_table is None:
        raise ConfigError("--prefill-max-throughput needs --tpot-table (e.g. 10:12.8,20:16.4)")
    return table_cost_model(
        input_len_tokens=shape.mean_input_tokens,
        prefill_max_tokens_per_s=prefill_max,  # type: ignore[arg-type]
        overhead_s=overhead_s or 0.0,
        tpot_points=parse_tpot_table(tpot_table),
    )


def plan_json(plan: Plan, req: PlanRequest) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return None if math.isnan(x) or math.isinf(x) else x

    p = plan.paper
    return {
        "num_prefill": plan.num_prefill,
        "num_decode": plan.num_decode,
        "raw_num_prefill": num(plan.raw_num_prefill),
        "raw_num_decode": num(plan.raw_num_decode),
        "prefill_tokens_per_s": plan.prefill_tokens_per_s,
        "decode_tokens_per_s": plan.decode_tokens_per_s,
        "decode_batch_size": plan.decode_batch_size,
        "pd_ratio": num(plan.pd_ratio),
        "feasible": plan.feasible,
        "reason": plan.reason,
        # Which model(s) found the SLOs infeasible: "improved" (Tandem's, whose integers are the
        # plan) and/or "paper"; empty when both are feasible.
        "infeasible_in": [
            name for name, ok in (("improved", plan.feasible), ("paper", p.feasible)) if not ok
        ],
        "rate_rps": req.rate_rps,
        "total_tokens_per_s": req.total_tokens_per_s,
        "predicted_ttft_s": num(plan.predicted_ttft_s),
        "predicted_decode_batch": num(plan.predicted_decode_batch),
        "queue": req.queue,
        "dispatch": req.dispatch,
        "ttft_percentile": req.ttft_percentile,
        "paper": {
            "num_prefill": p.num_prefill,
            "num_decode": p.num_decode,
            "raw_num_prefill": num(p.raw_num_prefill),
            "raw_num_decode": num(p.raw_num_decode),
            "prefill_max_tokens_per_s": p.prefill_max_tokens_per_s,
            "overhead_s": p.overhead_s,
            "prefill_tokens_per_s": p.prefill_tokens_per_s,
            "decode_tokens_per_s": p.decode_tokens_per_s,
            "decode_batch_size": p.decode_batch_size,
            "pd_ratio": num(p.pd_ratio),
            "feasible": p.feasible,
            "reason": p.reason,
        },
    }


def plan_extrapolations(plan: Plan, req: PlanRequest) -> list[str]:
    """Where the plan's own numbers (the mean prompt, the prefill batch behind the maximum
    prefill throughput, the decode batches chosen, the mean context) leave the profile's
    measured range; one line for the profile, or none."""
    from tandem.perf.ranges import Usage

    shape = req.shape
    prompt = max(1, round(shape.mean_input_tokens))
    batches = [b for b in (plan.decode_batch_size, plan.paper.decode_batch_size) if b > 0]
    usage = Usage(
        min_prompt_tokens=prompt,
        max_prompt_tokens=prompt,
        max_prefill_batch_tokens=max(1, req.prefill_token_budget // prompt) * prompt,
        min_decode_batch_size=min(batches) if batches else None,
        max_decode_batch_size=max(batches) if batches else None,
        max_context_tokens_per_request=shape.mean_input_tokens + shape.mean_output_tokens / 2,
    )
    why = req.cost.extrapolations(usage)
    return [f"profile '{req.cost.name}': {'; '.join(why)}"] if why else []


def _print_steps(plan: Plan, req: PlanRequest) -> None:
    p = plan.paper
    l_in, l_out = p.input_len_tokens, p.output_len_tokens
    steps = [
        ("1 TP_total (input+output tokens/s)", p.total_tokens_per_s),
        ("  L_in / L_out (mean tokens)", f"{l_in:,.0f} / {l_out:,.0f}"),
        ("2 TP_prefill_max (tokens/s)", p.prefill_max_tokens_per_s),
        ("  T_overhead (s)", p.overhead_s),
        ("  TP_prefill = TP_max - L_in/(TTFT - T_overhead)", p.prefill_tokens_per_s),
        ("3 decode batch (largest meeting TPOT)", p.decode_batch_size),
        ("  TP_decode = batch / TPOT (tokens/s)", p.decode_tokens_per_s),
        ("4 N_prefill = TP_total*L_in/((L_in+L_out)*TP_prefill)", p.raw_num_prefill),
        ("  N_decode = TP_total*L_out/((L_in+L_out)*TP_decode)", p.raw_num_decode),
        ("  P:D ratio = L_in*TP_decode/(L_out*TP_prefill)", p.pd_ratio),
        ("5 rounded (up, unless fraction <= 0.1)", f"{p.num_prefill}P{p.num_decode}D"),
    ]
    print_table("The paper's model (M/M/1 prefill, TPOT table decode)", ["step", "value"], steps)
    what = "mean" if req.ttft_percentile is None else f"p{req.ttft_percentile:g}"
    print_mapping(
        f"Improved plan ({req.queue}, {req.dispatch} prefill queue, {what} TTFT)",
        {
            "raw N_prefill": plan.raw_num_prefill,
            "raw N_decode": plan.raw_num_decode,
            "decode batch (largest meeting TPOT at context)": plan.decode_batch_size,
            f"predicted {what} TTFT (s)": plan.predicted_ttft_s,
            "predicted batch a request sees": plan.predicted_decode_batch,
            "plan": f"{plan.num_prefill}P{plan.num_decode}D",
        },
    )


def plan_command(
    workload: str | None = typer.Option(
        None,
        "--workload",
        "-w",
        help="Workload name, trace path, or 'random' (the synthetic options below).",
    ),
    random_input_len: int | None = typer.Option(
        None, "--random-input-len", help=RANDOM_HELP["input"]
    ),
    random_output_len: int | None = typer.Option(
        None, "--random-output-len", help=RANDOM_HELP["output"]
    ),
    random_range_ratio: float | None = typer.Option(
        None, "--random-range-ratio", help=RANDOM_HELP["range"]
    ),
    request_rate: float | None = typer.Option(
        None, "--request-rate", help=RANDOM_HELP["rate"] + " Also the load to plan for."
    ),
    burstiness: float | None = typer.Option(None, "--burstiness", help=RANDOM_HELP["burstiness"]),
    num_prompts: int | None = typer.Option(None, "--num-prompts", help=RANDOM_HELP["num"]),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic workload."),
    input_len: float | None = typer.Option(None, "--input-len", help="Mean prompt tokens."),
    output_len: float | None = typer.Option(None, "--output-len", help="Mean output tokens."),
    throughput: str | None = typer.Option(
        None, "--throughput", help="Input+output tokens, e.g. 5M/min."
    ),
    rate: str | None = typer.Option(None, "--rate", help="Requests per second, e.g. 10rps."),
    slo_text: str = typer.Option(
        ..., "--slo", "--goodput", help=SLO_HELP + "; plan needs ttft and tpot."
    ),
    ttft_percentile: float | None = typer.Option(
        None, "--ttft-percentile", help="Plan for this TTFT percentile instead of the mean."
    ),
    profile: str | None = typer.Option(None, "--profile", help="Built-in profile or file."),
    measured: Path | None = typer.Option(None, "--measured", help="Measured-tables file."),
    prefill_max: float | None = typer.Option(
        None, "--prefill-max-throughput", help="Max prefill tokens/s at the input length."
    ),
    overhead: str | None = typer.Option(
        None, "--overhead", help="T_overhead (client I/O + KV transfer), e.g. 0.1s."
    ),
    tpot_table: str | None = typer.Option(
        None, "--tpot-table", help="batch:TPOT_ms pairs, e.g. 10:12.8,20:16.4."
    ),
    queue: str = typer.Option("mg1", "--queue", help="Prefill service model: mm1, md1, mg1."),
    dispatch: str = typer.Option("shared", "--dispatch", help="Prefill queues: shared, split."),
    verify: bool = typer.Option(
        False, "--verify", help="Find the cheapest plan the simulator accepts."
    ),
    verify_requests: int | None = typer.Option(
        None, "--verify-requests", help="Most requests per simulation (default: sized by time)."
    ),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write SLO attainment against load to this file (.png, .svg, .pdf; directories "
        "are created).",
    ),
    chunk_tokens: int | None = typer.Option(
        None, *CHUNK_NAMES, help=CHUNK_HELP + " Used by --verify and --plot's simulations."
    ),
    prefix_cache_tokens: int | None = typer.Option(
        None, PREFIX_NAME, help=PREFIX_HELP + " Used by --verify and --plot's simulations."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Plan the number of prefill and decode instances for a load and SLOs."""
    if verify_requests is not None and verify_requests < 2:
        raise ConfigError(f"--verify-requests must be >= 2, got {verify_requests}")
    checked_prefix_cache(prefix_cache_tokens)  # refused before any planning
    plot = plot_path(plot, "--plot")
    flags = RandomFlags(
        random_input_len, random_output_len, random_range_ratio, request_rate, burstiness,
        num_prompts,
    )  # fmt: skip
    req, w = _request(
        workload, input_len, output_len, throughput, rate, slo_text, ttft_percentile, profile,
        measured, prefill_max, overhead, tpot_table, queue, dispatch, flags, seed,
    )  # fmt: skip
    req = dataclasses.replace(
        req, chunk_tokens=chunk_tokens, prefix_cache_tokens=prefix_cache_tokens
    )
    with warnings.catch_warnings():
        # The batch search probes batches outside measured tables on purpose; what the plan
        # itself uses is checked against the measured range below, and said once.
        warnings.simplefilter("ignore")
        plan = make_plan(req)
        out = plan_json(plan, req)
        out["extrapolated"] = plan_extrapolations(plan, req)
        if verify and plan.feasible:
            out.update(_verify(plan, req, w, verify_requests))
        if plot is not None and plan.feasible:
            _plot(plan, req, w, out, plot)
    for line in out["extrapolated"]:
        typer.echo(f"warning: extrapolated beyond the measured range: {line}", err=True)
    if as_json:
        print_json(out)
    else:
        _print_steps(plan, req)
        if "verify" in out:
            _print_verify(out)
        if plot is not None and plan.feasible:
            typer.echo(f"plot written to {plot}")
    if not plan.feasible:
        typer.echo(infeasible_message(plan), err=True)
        raise typer.Exit(2)


def infeasible_message(plan: Plan) -> str:
    """Which model decided, its reasons, and what the other model says."""
    p = plan.paper
    paper = (
        f"the paper's model is feasible ({p.num_prefill}P{p.num_decode}D); the plan follows "
        "the improved model"
        if p.feasible
        else f"the paper's model is infeasible too: {p.reason}"
    )
    return f"infeasible under Tandem's improved model: {plan.reason}; {paper}"


def _request(
    workload: str | None,
    input_len: float | None,
    output_len: float | None,
    throughput: str | None,
    rate: str | None,
    slo_text: str,
    ttft_percentile: float | None,
    profile: str | None,
    measured: Path | None,
    prefill_max: float | None,
    overhead: str | None,
    tpot_table: str | None,
    queue: str,
    dispatch: str,
    flags: RandomFlags | None = None,
    seed: int = 0,
) -> tuple[PlanRequest, Workload | None]:
    slo = parse_slo(slo_text)
    if slo.ttft_s is None or slo.tpot_s is None:
        raise ConfigError("--slo needs both ttft and tpot, e.g. ttft=2s,tpot=20ms")
    shape, w = _shape(workload, input_len, output_len, flags, seed)
    overhead_s = parse_duration_s(overhead) if overhead is not None else None
    cost = _cost(profile, measured, prefill_max, tpot_table, overhead_s, shape)
    req = PlanRequest(
        shape=shape,
        rate_rps=_rate(throughput, rate, shape, w, flags.request_rate if flags else None),
        ttft_slo_s=slo.ttft_s,
        tpot_slo_s=slo.tpot_s,
        cost=cost,
        overhead_s=overhead_s,
        ttft_percentile=ttft_percentile,
        queue=queue,
        dispatch=dispatch,
    )
    return req, w


def _print_verify(out: dict[str, Any]) -> None:
    v = out["verify"]
    rows = [
        (
            f"{c['num_prefill']}P{c['num_decode']}D",
            c["predicted_ttft_s"],
            c["ttft_s"],
            c["predicted_tpot_s"],
            c["tpot_p90_s"],
            c["predicted_attainment"],
            c["attainment"],
            "yes" if c["meets"] else "no",
        )
        for c in v["checks"]
    ]
    print_table(
        f"Simulated candidates ({v['num_requests']:,} requests, judged arrivals "
        f"{v['judged_from_s']:.3g}-{v['judged_until_s']:.3g} s)",
        [
            "plan",
            "TTFT pred (s)",
            "TTFT sim (s)",
            "TPOT pred (s)",
            "TPOT sim (s)",
            "attain pred",
            "attain sim",
            "meets",
        ],
        rows,
    )
    if out["verified_num_prefill"] is None:
        typer.echo("verified: no candidate met the SLOs in simulation")
    else:
        typer.echo(
            f"verified (cheapest the simulator accepts): "
            f"{out['verified_num_prefill']}P{out['verified_num_decode']}D"
        )


def _plot(
    plan: Plan, req: PlanRequest, w: Workload | None, out: dict[str, Any], path: Path
) -> None:
    from tandem.plan.search import attainment_curves, neighbours, plot_attainment

    if out.get("verified_num_prefill") is not None:
        chosen = (out["verified_num_prefill"], out["verified_num_decode"])
    else:
        chosen = (plan.num_prefill, plan.num_decode)
    curves = attainment_curves(req, w, neighbours(*chosen))
    plot_attainment(req, curves, chosen, path)
    out["plot"] = str(path)


def _verify(plan: Plan, req: PlanRequest, w: Workload | None, n: int | None) -> dict[str, Any]:
    from tandem.plan.search import verify_plan

    v = verify_plan(plan, req, w, n)

    def num(x: float) -> float | None:
        return None if math.isnan(x) or math.isinf(x) else x

    return {
        "verified_num_prefill": v.best[0] if v.best else None,
        "verified_num_decode": v.best[1] if v.best else None,
        "verify": {
            "num_requests": v.run.num_requests,
            "judged_from_s": v.run.judge_from_s,
            "judged_until_s": v.run.judge_until_s,
            "checks": [
                {
                    "num_prefill": c.sim.num_prefill,
                    "num_decode": c.sim.num_decode,
                    "predicted_ttft_s": num(c.predicted_ttft_s),
                    "predicted_tpot_s": num(c.predicted_tpot_s),
                    "predicted_attainment": c.predicted_attainment,
                    "ttft_s": num(c.sim.ttft_s),
                    "tpot_p90_s": num(c.sim.tpot_s),
                    "attainment": c.sim.attainment,
                    "meets": c.sim.meets,
                }
                for c in v.candidates
            ],
        },
    }


#: The plan ``tandem demo`` shows: an embedded reasoning workload at its own rate on one A100.
DEMO_WORKLOAD = "servegen-r1"
DEMO_PROFILE = "llama3-8b_a100_tp1"
DEMO_SLO = "ttft=5s,tpot=100ms"
DEMO_TTFT_PERCENTILE = 90.0


def print_demo_plan() -> tuple[Plan, PlanRequest]:
    """Print the paper's steps and the improved plan for the demo workload (no simulation);
    return the plan and its request, which the demo's policy comparison builds on."""
    req, _ = _request(
        DEMO_WORKLOAD, None, None, None, None, DEMO_SLO, DEMO_TTFT_PERCENTILE, DEMO_PROFILE,
        None, None, None, None, "mg1", "shared",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = make_plan(req)
    typer.echo(
        f"Capacity plan: {DEMO_WORKLOAD} at {req.rate_rps:.3g} requests/s on "
        f"{DEMO_PROFILE}, SLO {DEMO_SLO} (p{DEMO_TTFT_PERCENTILE:g} TTFT)"
    )
    _print_steps(plan, req)
    return plan, req
