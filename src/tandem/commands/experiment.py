"""``tandem experiment``: end-to-end policy comparisons in the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from tandem.commands._output import parse_positive_ints, print_json, print_table
from tandem.errors import ConfigError
from tandem.experiments.rescheduling import POLICIES, Setup, run_cell
from tandem.metrics.serving import parse_slo
from tandem.perf.registry import get_profile
from tandem.sim import SimResult
from tandem.workload import load_workload
from tandem.workload.transforms import span

app = typer.Typer(help="End-to-end policy comparisons in the simulator.", no_args_is_help=True)

#: SLOs by workload: reasoning answers tolerate a slower first token.
DEFAULT_SLOS = {
    "servegen-r1": "ttft=10s,tpot=100ms",
    "azure-conv": "ttft=2s,tpot=100ms",
    "azure-code": "ttft=2s,tpot=100ms",
    "mooncake-conv": "ttft=10s,tpot=100ms",
}


@app.command("rescheduling")
def rescheduling(
    workloads: str = typer.Option("servegen-r1,azure-conv,azure-code,mooncake-conv", "--workloads"),
    decode: str = typer.Option("16,64", "--decode", help="Decode-cluster sizes, comma-separated."),
    prefill_ratio: float = typer.Option(
        1.0,
        "--prefill-ratio",
        help="Prefill instances per decode instance (enough that decode is the bottleneck).",
    ),
    profile: str = typer.Option("llama3-8b_a100_tp1", "--profile"),
    window_s: float = typer.Option(
        600.0,
        "--window-s",
        help="Seconds of each trace to replay per 16 decode instances (larger clusters replay "
        "proportionally more, repeating the trace if it is too short).",
    ),
    policies: str = typer.Option(",".join(POLICIES), "--policies"),
    max_goodput: bool = typer.Option(
        False,
        "--max-goodput",
        help="Also search each policy's highest load with >= 90% attainment.",
    ),
    out_dir: Path = typer.Option(
        Path("out/rescheduling"), "--out-dir", help="Where the JSON, table and plots go."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compare decode placement and rescheduling policies on real workloads."""
    names = [p for p in policies.split(",") if p]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy {unknown[0]}; known: {', '.join(POLICIES)}")
    cost = get_profile(profile)
    results: dict[str, Any] = {"profile": profile, "window_s": window_s, "workloads": {}}
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for workload_name in [w for w in workloads.split(",") if w]:
        slo_text = DEFAULT_SLOS.get(workload_name, "ttft=2s,tpot=100ms")
        trace = load_workload(workload_name)
        for num_decode in parse_positive_ints(decode, "--decode"):
            workload = span(trace, window_s * num_decode / 16)
            num_prefill = max(1, round(num_decode * prefill_ratio))
            setup = Setup(workload, cost, num_prefill, num_decode, parse_slo(slo_text))
            timelines: dict[str, SimResult] = {}
            cell = run_cell(setup, names, max_goodput=max_goodput, timelines=timelines)
            cell.update({"slo": slo_text, "num_prefill": num_prefill, "num_decode": num_decode})
            key = f"{workload_name}/{num_prefill}P{num_decode}D"
            results["workloads"][key] = cell
            _plot_pair(timelines, out_dir / f"kv_{workload_name}_{num_decode}D.png")
            for policy, m in cell["policies"].items():
                rows.append(
                    (
                        key,
                        f"{cell['rate_rps']:.1f}",
                        policy,
                        m["p99_tpot_ms"],
                        m["mean_tpot_ms"],
                        m["p99_ttft_ms"],
                        m["slo_attainment"],
                        m["goodput_rps"],
                        m.get("max_goodput_rps", float("nan")),
                        m["num_preempted"],
                        m["num_migrations"],
                        m["num_replaced"],
                        m["migrated_bytes"] / 2**30,
                    )
                )
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    if as_json:
        print_json(results)
        return
    print_table(
        f"decode rescheduling ({profile}); load = highest at which round-robin meets 90%",
        [
            "cluster",
            "req/s",
            "policy",
            "p99 TPOT ms",
            "mean TPOT ms",
            "p99 TTFT ms",
            "SLO met",
            "goodput req/s",
            "max goodput",
            "preempted",
            "migrations",
            "re-placed",
            "GiB moved",
        ],
        rows,
    )
    typer.echo(f"results and plots in {out_dir}")


def _plot_pair(timelines: dict[str, SimResult], out: Path) -> None:
    from tandem.sim.plot import plot_timeline

    for policy, result in timelines.items():
        plot_timeline(result, out.with_name(out.stem + f"_{policy}.png"))
