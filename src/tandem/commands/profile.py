"""``tandem profile``: list, inspect and judge the performance profiles (cost models)."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from tandem.commands._output import plot_path, print_json, print_mapping, print_table
from tandem.perf.base import CostModel
from tandem.perf.fit_report import fit_report
from tandem.perf.measured import MeasuredCostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.perf.registry import get_profile, list_profiles

app = typer.Typer(
    help="Performance profiles: time of prefill, decode steps and KV transfer.",
    no_args_is_help=True,
)

SHOW_PROMPTS = (128, 512, 2048, 8192)
SHOW_BATCHES = (1, 8, 32, 128)
SHOW_CONTEXTS = (512, 2048, 8192)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="JSON output.")) -> None:
    """The built-in profiles: name, model, hardware, tensor-parallel degree and source."""
    infos = list_profiles()
    if as_json:
        print_json(
            [
                {
                    "name": p.name,
                    "model": p.model,
                    "hardware": p.hardware,
                    "tp": p.tensor_parallel,
                    "source": p.source,
                    "kind": p.kind,
                }
                for p in infos
            ]
        )
        return
    print_table(
        "profiles (also: roofline:<model>:<hardware>:tp<N>, or a measured-profile file path)",
        ["name", "model", "hardware", "TP", "source"],
        [(p.name, p.model, p.hardware, p.tensor_parallel, p.source) for p in infos],
    )


def _summary(model: CostModel) -> dict:
    """Times (ms) on a small grid, KV figures; out-of-range cells are computed and flagged."""
    out: dict = {
        "name": model.name,
        "kv_bytes_per_token": model.kv_bytes_per_token,
        "kv_capacity_tokens": model.kv_capacity_tokens,
        "kv_transfer_ms_1k_tokens": model.kv_transfer_time_s(1000) * 1e3,
    }
    out["prefill_ms"] = {str(n): model.prefill_time_s([n]) * 1e3 for n in SHOW_PROMPTS}
    out["decode_step_ms"] = {
        f"batch={b},ctx={c}": model.decode_step_time_s(b, b * c) * 1e3
        for b in SHOW_BATCHES
        for c in SHOW_CONTEXTS
    }
    if isinstance(model, MeasuredCostModel):
        out["prefill_points"] = [
            {
                "input_len_tokens": p.input_len_tokens,
                "max_throughput_tokens_per_s": p.max_throughput_tokens_per_s,
            }
            for p in model.prefill_points
        ]
        out["overhead_s"] = model.overhead_s
        out["tpot_points"] = [
            {"batch_size": p.batch_size, "tpot_ms": p.tpot_s * 1e3} for p in model.tpot_points
        ]
    return out


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Profile name, roofline:<model>:<hw>:tp<N>, or a file."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write the curves to this file (.png, .svg, .pdf; directories are created).",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Prefill time against tokens, decode step time against batch size, KV capacity."""
    plot = plot_path(plot, "--plot")
    model = get_profile(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfMeasuredRangeWarning)
        summary = _summary(model)
    flags = [str(w.message) for w in caught if issubclass(w.category, OutOfMeasuredRangeWarning)]
    if flags:
        summary["out_of_range"] = flags
    if plot is not None:
        from tandem.perf.plot import plot_cost_model

        plot_cost_model(model, plot)
    if as_json:
        print_json(summary)
        if plot is not None:
            typer.echo(f"plot written to {plot}", err=True)
        return
    head = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    print_mapping(f"profile {model.name}", head)
    print_table(
        "prefill (one prompt)", ["prompt tokens", "ms"], list(summary["prefill_ms"].items())
    )
    rows = [
        (b, *(summary["decode_step_ms"][f"batch={b},ctx={c}"] for c in SHOW_CONTEXTS))
        for b in SHOW_BATCHES
    ]
    print_table("decode step (ms)", ["batch", *(f"ctx {c}/req" for c in SHOW_CONTEXTS)], rows)
    for flag in flags:
        typer.echo(f"warning: {flag}", err=True)
    if plot is not None:
        typer.echo(f"plot written to {plot}")


@app.command("fit-report")
def fit_report_cmd(as_json: bool = typer.Option(False, "--json", help="JSON output.")) -> None:
    """Error of each measured profile on measured points held out of its fit."""
    report = fit_report()
    if as_json:
        print_json(report.to_json())
        return
    rows = [
        (
            p.name,
            p.reference_kind,
            p.num_points,
            p.mean_abs_pct_error,
            p.max_abs_pct_error,
            "-" if p.uncorrected_mean_abs_pct_error is None else p.uncorrected_mean_abs_pct_error,
            "-" if p.roofline_mean_abs_pct_error is None else p.roofline_mean_abs_pct_error,
        )
        for p in report.profiles
    ]
    print_table(
        "held-out error (%): fitted profile; operator sums alone; roofline",
        ["profile", "reference", "points", "mean", "max", "kernels only", "roofline"],
        rows,
    )
    pooled = report.splitwise_mean_abs_pct_error
    if pooled is not None:
        typer.echo(f"SplitwiseSim measured iterations, pooled mean abs error: {pooled:.2f}%")
    for name, reason in report.skipped:
        typer.echo(f"skipped {name}: {reason}")


@app.command("measure")
def measure_cmd(
    base_url: str = typer.Option(..., help="The server, e.g. http://127.0.0.1:8000"),
    input_len: int = typer.Option(..., help="Prompt tokens of every request."),
    output_len: int = typer.Option(..., help="Output tokens of the decode runs."),
    concurrency: str = typer.Option("1,2,4,8,16,32", help="Closed-loop clients, one run each."),
    model: str = typer.Option(None, help="Model name (default: the first /v1/models lists)."),
    prefill_concurrency: int = typer.Option(
        16, help="Requests kept in flight to saturate prefill."
    ),
    kv_bytes_per_token: int = typer.Option(
        None, help="KV bytes per token (default: what the server's /metrics reports)."
    ),
    kv_capacity_tokens: int = typer.Option(
        None, help="KV capacity of one decode instance in tokens (default: from /metrics)."
    ),
    name: str = typer.Option(None, help="Profile name (default: measured-<model>)."),
    hardware: str = typer.Option("measured", help="Hardware description for the profile."),
    api_key: str = typer.Option(None, help="Bearer token for the server."),
    out: Path = typer.Option(None, help="Write the measured profile here (YAML)."),
    plot: Path = typer.Option(
        None, help="Draw what was measured (.png, .svg, .pdf; directories are created)."
    ),
) -> None:
    """Measure a live endpoint's prefill throughput and TPOT against batch: a profile that
    `tandem plan --measured` and `tandem simulate --profile` read."""
    from tandem.commands.profile_measure import run_measure

    run_measure(
        base_url=base_url,
        input_len=input_len,
        output_len=output_len,
        concurrency=concurrency,
        model=model,
        prefill_concurrency=prefill_concurrency,
        kv_bytes_per_token=kv_bytes_per_token,
        kv_capacity_tokens=kv_capacity_tokens,
        name=name,
        hardware=hardware,
        api_key=api_key,
        out=out,
        plot=plot_path(plot, "--plot"),
    )
