"""``tandem experiment``: end-to-end policy comparisons in the simulator."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import typer

from tandem.commands._chunked import HELP as CHUNK_HELP
from tandem.commands._chunked import NAMES as CHUNK_NAMES
from tandem.commands._output import parse_positive_ints, print_json, print_table
from tandem.commands._prefix_cache import HELP as PREFIX_HELP
from tandem.commands._prefix_cache import NAME as PREFIX_NAME
from tandem.commands._prefix_cache import checked as checked_prefix_cache
from tandem.commands._synthetic import HELP as RANDOM_HELP
from tandem.commands._synthetic import RANDOM, RandomFlags
from tandem.commands.simulate import warn_extrapolated
from tandem.errors import ConfigError
from tandem.experiments.rescheduling import POLICIES, Setup, run_cell, steady_window_s
from tandem.metrics.serving import SLO_HELP, parse_slo
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.perf.registry import get_profile
from tandem.sim import SimResult
from tandem.workload import load_workload
from tandem.workload.transforms import scale_lengths

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
    workloads: str = typer.Option(
        "servegen-r1,azure-conv,azure-code,mooncake-conv",
        "--workloads",
        help="Embedded workloads, trace paths or 'random' (the synthetic options below), "
        "comma-separated.",
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
        None,
        "--request-rate",
        help="Synthetic workload: requests per second of its base load (needed with random; "
        "loads are multiples of it).",
    ),
    burstiness: float | None = typer.Option(None, "--burstiness", help=RANDOM_HELP["burstiness"]),
    num_prompts: int | None = typer.Option(
        None,
        "--num-prompts",
        help="Synthetic workload: requests drawn before the window repeats them [default: 1000].",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the synthetic workload, of the prediction errors and of where the trace "
        "starts (seed s replays it from s/3 of its length).",
    ),
    output_scale: float = typer.Option(
        1.0,
        "--output-scale",
        help="Multiply every request's output length (longer answers: more decode memory).",
    ),
    decode: str = typer.Option("16,64", "--decode", help="Decode-cluster sizes, comma-separated."),
    prefill_ratio: float = typer.Option(
        1.0,
        "--prefill-ratio",
        help="Prefill instances per decode instance (enough that decode is the bottleneck).",
    ),
    profile: str = typer.Option(
        "llama3-8b_a100_tp1", "--profile", help="Performance profile name or file."
    ),
    window_s: float | None = typer.Option(
        None,
        "--window-s",
        help="Seconds of arrivals replayed at every load and cluster size (the trace is taken "
        "window x load long, repeated if shorter, then compressed to the load) "
        "[default: 3 memory-weighted mean request lifetimes, at least 600 s].",
        show_default=False,
    ),
    policies: str = typer.Option(
        ",".join(POLICIES),
        "--policies",
        help="Decode policy presets to compare, comma-separated (as simulate --policy).",
    ),
    slo_text: str | None = typer.Option(
        None,
        "--slo",
        "--goodput",
        help=SLO_HELP
        + ". Default by workload: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_SLOS.items())
        + ", others ttft=2s,tpot=100ms.",
    ),
    max_goodput: bool = typer.Option(
        False,
        "--max-goodput",
        help="Also search each policy's highest load with >= 90% attainment.",
    ),
    out_dir: Path = typer.Option(
        Path("out/rescheduling"), "--out-dir", help="Where the JSON, table and plots go."
    ),
    chunk_tokens: int | None = typer.Option(None, *CHUNK_NAMES, help=CHUNK_HELP),
    prefix_cache_tokens: int | None = typer.Option(None, PREFIX_NAME, help=PREFIX_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print results.json on stdout instead of the tables."
    ),
) -> None:
    """Compare decode placement and rescheduling policies on real workloads."""
    names = [p for p in policies.split(",") if p]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy {unknown[0]}; known: {', '.join(POLICIES)}")
    if not (math.isfinite(output_scale) and output_scale > 0):
        raise ConfigError(f"--output-scale must be a finite number > 0, got {output_scale}")
    if window_s is not None and not (math.isfinite(window_s) and window_s > 0):
        raise ConfigError(f"--window-s must be positive, got {window_s}")
    if not (math.isfinite(prefill_ratio) and prefill_ratio > 0):
        raise ConfigError(f"--prefill-ratio must be a finite number > 0, got {prefill_ratio}")
    if slo_text is not None:
        parse_slo(slo_text)  # refused before any simulation
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ConfigError(f"--chunk-tokens must be >= 1, got {chunk_tokens}")
    checked_prefix_cache(prefix_cache_tokens)
    cost = get_profile(profile)
    results: dict[str, Any] = {
        "profile": profile,
        "seed": seed,
        "output_scale": output_scale,
        "workloads": {},
    }
    if chunk_tokens is not None:
        results["chunk_tokens"] = chunk_tokens
    if prefix_cache_tokens is not None:
        results["prefix_cache_tokens"] = prefix_cache_tokens
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, list[str], list[tuple[Any, ...]]]] = []
    workload_names = [w for w in workloads.split(",") if w]
    if not workload_names:
        raise ConfigError("--workloads is empty; name at least one workload")
    flags = RandomFlags(
        random_input_len, random_output_len, random_range_ratio, request_rate, burstiness,
        num_prompts,
    )  # fmt: skip
    if flags.given and RANDOM not in workload_names:
        raise ConfigError("the synthetic-workload options need 'random' in --workloads")
    if RANDOM in workload_names and (request_rate is None or not math.isfinite(request_rate)):
        raise ConfigError("--workloads random needs a finite --request-rate (its base load)")
    # A profile asked outside its measured range warns once; said as one line each at the end
    # (and in the JSON), not as Python warnings with source lines.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfMeasuredRangeWarning)
        for workload_name in workload_names:
            slo = slo_text or DEFAULT_SLOS.get(workload_name, "ttft=2s,tpot=100ms")
            trace = (
                flags.workload(seed) if workload_name == RANDOM else load_workload(workload_name)
            )
            if output_scale != 1.0:
                trace = scale_lengths(trace, output_factor=output_scale)
            window = window_s
            if window is None:  # long enough for decode memory to reach its steady level
                estimate = steady_window_s(trace, cost)
                window = estimate.window_s
                if not as_json:
                    weighted = estimate.weighted_output_tokens
                    typer.echo(
                        f"{workload_name}: window {window:.0f} s of arrivals (memory-weighted "
                        f"mean lifetime {estimate.lifetime_s:.0f} s: {weighted:.0f} tokens x "
                        f"{estimate.step_s * 1e3:.1f} ms a step)"
                    )
            per_decode: float | None = None  # load per decode instance found on a smaller cluster
            for num_decode in parse_positive_ints(decode, "--decode"):
                num_prefill = max(1, round(num_decode * prefill_ratio))
                setup = Setup(
                    trace,
                    cost,
                    num_prefill,
                    num_decode,
                    parse_slo(slo),
                    window,
                    chunk_tokens,
                    prefix_cache_tokens,
                    seed=seed,
                )
                start = num_decode * per_decode if per_decode else num_decode / 16
                timelines: dict[str, SimResult] = {}
                cell = run_cell(
                    setup, names, max_goodput=max_goodput, start_scale=start, timelines=timelines
                )
                per_decode = cell["rate_scale"] / num_decode
                cell.update(
                    {
                        "slo": slo,
                        "num_prefill": num_prefill,
                        "num_decode": num_decode,
                        "window_s": window,
                    }
                )
                key = f"{workload_name}/{num_prefill}P{num_decode}D"
                results["workloads"][key] = cell
                _plot_pair(timelines, out_dir / f"kv_{workload_name}_{num_decode}D.png")
                tables.append(_table(key, _load_label(cell), cell, slo))
                if "at_ares_max" in cell:
                    top = "ares" if "ares" in names else "ares-oracle"
                    label = f"{top}'s 90% load"
                    if cell["policies"][top].get("max_goodput_capped"):
                        label = f"the search's cap: {top} still met 90% there"
                    tables.append(_table(key, label, cell["at_ares_max"], slo))
                # Written after every cell, so a long run keeps what it has finished.
                (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    extrapolated: list[str] = []
    for w in caught:
        if issubclass(w.category, OutOfMeasuredRangeWarning):
            if str(w.message) not in extrapolated:
                extrapolated.append(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if extrapolated:
        results["extrapolated"] = extrapolated
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
        warn_extrapolated(extrapolated)
    if as_json:
        print_json(results)
        return
    # One table per cluster and load, a column per policy, so it reads in 80 columns.
    for title, columns, rows in tables:
        print_table(title, ["", *columns], rows)
    typer.echo(f"results and plots in {out_dir}")


def _load_label(cell: dict[str, Any]) -> str:
    """What the load of a cell is: round-robin's 90% load, or the search's cap when
    round-robin met the SLOs at every load tried (a cap is not a measurement)."""
    if cell.get("rate_scale_capped"):
        return f"the search's cap, x{cell['rate_scale']:.3g}: round-robin still met 90% there"
    return "round-robin's 90% load"


#: (row label, metric key, scale) of the printed tables; everything is also in the JSON.
_METRICS = [
    ("P99 TPOT ms", "p99_tpot_ms", 1.0),
    ("mean TPOT ms", "mean_tpot_ms", 1.0),
    ("P99 TTFT s", "p99_ttft_ms", 1e-3),
    ("SLO met", "slo_attainment", 1.0),
    ("goodput req/s", "goodput_rps", 1.0),
    ("max goodput req/s", "max_goodput_rps", 1.0),
    ("preempted", "num_preempted", 1),
    ("migrations", "num_migrations", 1),
    ("GiB migrated", "migrated_bytes", 2.0**-30),
]


def _table(
    key: str, load: str, cell: dict[str, Any], slo: str
) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    title = f"{key} at {cell['rate_rps']:.1f} req/s ({load}), SLO {slo}"
    return (title, *policy_table(cell["policies"]))


def policy_table(
    by_policy: dict[str, dict[str, Any]],
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Policies as columns and metrics as rows (``row``'s figures): nine rows fit 80 columns
    with five policies, where a column per metric did not."""
    policies = list(by_policy)
    rows = []
    for label, metric, scale in _METRICS:
        values = [by_policy[p].get(metric) for p in policies]
        if all(v is None for v in values):
            continue  # max goodput: only searched with --max-goodput
        shown: list[Any] = [float("nan") if v is None else v * scale for v in values]
        if metric == "max_goodput_rps":  # a search that hit its cap found a lower bound
            capped = [by_policy[p].get("max_goodput_capped") for p in policies]
            shown = [f">= {v:.4g}" if c else v for v, c in zip(shown, capped, strict=True)]
        rows.append((label, *shown))
    return policies, rows


def _plot_pair(timelines: dict[str, SimResult], out: Path) -> None:
    from tandem.sim.plot import plot_timeline

    for policy, result in timelines.items():
        plot_timeline(result, out.with_name(out.stem + f"_{policy}.png"), policy=f"policy {policy}")
