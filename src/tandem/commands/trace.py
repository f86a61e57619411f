"""``tandem trace``: inspect workloads (embedded names or trace files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tandem.commands._output import plot_path, print_json, print_table
from tandem.workload import EMBEDDED, load_workload
from tandem.workload.stats import workload_stats

app = typer.Typer(help="Inspect workloads: embedded traces or trace files.", no_args_is_help=True)


@app.command("list")
def list_workloads(as_json: bool = typer.Option(False, "--json", help="JSON output.")) -> None:
    """List the embedded workloads."""
    rows = [
        {"name": w.name, "description": w.description, "license": w.license}
        for w in EMBEDDED.values()
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(
            "embedded workloads",
            ["name", "description", "license"],
            [tuple(r.values()) for r in rows],
        )


@app.command("stats")
def stats(
    workload: str = typer.Argument(..., help="Embedded workload name or trace file path."),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write length histograms and arrival rate to this file (.png, .svg, .pdf; "
        "directories are created).",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip malformed rows (and report how many)."
    ),
) -> None:
    """Request count, duration, rate, burstiness and length percentiles of a workload."""
    plot = plot_path(plot, "--plot")
    w = load_workload(workload, skip_bad=skip_bad)
    result = workload_stats(w)
    if plot is not None:
        from tandem.workload.plot import plot_workload

        plot_workload(w, plot)
    if as_json:
        print_json(result)
        if plot is not None:
            typer.echo(f"plot written to {plot}", err=True)
        return
    print_stats_table([result])
    for note in w.notes:
        typer.echo(f"note: {note}", err=True)
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def print_stats_table(results: list[dict]) -> None:
    """A column per workload (so several fit 80 columns) and a row per figure: count,
    duration, rate, burstiness, input and output lengths."""
    rows: list[tuple[Any, ...]] = [
        ("requests", *(r["num_requests"] for r in results)),
        ("span s", *(r["duration_s"] for r in results)),
        ("req/s", *(r["mean_rate_rps"] for r in results)),
        ("interarrival CV", *(r["interarrival_cv"] for r in results)),
    ]
    for key, side in (("input_tokens", "input"), ("output_tokens", "output")):
        for q in ("mean", "p50", "p99"):
            rows.append((f"{side} {q}", *(round(r[key][q]) for r in results)))
    print_table("workloads (lengths in tokens)", ["", *(r["name"] for r in results)], rows)
