"""``tandem simulate``: run a workload on a simulated P/D cluster and print metrics."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from tandem.commands._chunked import HELP as CHUNK_HELP
from tandem.commands._chunked import NAMES as CHUNK_NAMES
from tandem.commands._output import plot_path, print_json, print_mapping
from tandem.commands._prefix_cache import HELP as PREFIX_HELP
from tandem.commands._prefix_cache import NAME as PREFIX_NAME
from tandem.commands._prefix_cache import checked as checked_prefix_cache
from tandem.commands._synthetic import HELP as RANDOM_HELP
from tandem.commands._synthetic import RandomFlags, wants_random
from tandem.control.admission import DEFAULT_AGING_TOKENS_PER_S
from tandem.errors import ConfigError
from tandem.metrics.serving import SLO, SLO_HELP, parse_slo
from tandem.perf.ranges import OutOfMeasuredRangeWarning
from tandem.sim import ClusterConfig, SimResult, simulate
from tandem.sim.goodput import find_max_rate_scale
from tandem.sim.presets import with_policy
from tandem.workload import Workload, load_workload
from tandem.workload.transforms import limit, scale_rate

DEFAULT_PROFILE = "llama3-8b_a100_tp1"

SHOWN = (
    "num_requests",
    "num_completed",
    "num_rejected",
    "num_preempted",
    "slo_attainment",
    "request_goodput",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "p99_e2el_ms",
    "num_migrations",
    "num_migrations_aborted",
    "migrated_bytes",
    "migration_pause_s",
    "prefix_cache_hit_rate",
    "prefix_cache_request_hit_rate",
)


def load_cost_model(profile: str):  # noqa: ANN201 - CostModel, imported lazily
    """A built-in profile name or a user's profile file."""
    from tandem.perf.registry import get_profile

    return get_profile(profile)


def prepare_workload(
    workload: str | None,
    rate_scale: float,
    num_requests: int | None,
    skip_bad: bool,
    flags: RandomFlags | None = None,
    seed: int = 0,
) -> Workload:
    """The workload to simulate: a trace (embedded or a file; the first ``num_requests``) or
    the synthetic one (``-w random`` or the vLLM random-dataset flags; ``num_requests`` of
    them), at ``rate_scale`` times its rate."""
    flags = flags or RandomFlags()
    if wants_random(workload, flags):
        w = replace(flags, num_prompts=num_requests).workload(seed)
    else:
        w = load_workload(workload or "azure-conv", skip_bad=skip_bad)
    if num_requests is not None:
        w = limit(w, num_requests)
    if rate_scale != 1.0:
        w = scale_rate(w, rate_scale)
    return w


#: The ``ClusterConfig`` fields a decode policy preset sets (``tandem.sim.presets``).
COMPONENTS = ("placement", "rescheduler", "prediction", "admission")


def decode_policy(
    config: ClusterConfig,
    policy: str | None,
    *,
    placement: str | None = None,
    rescheduler: str | None = None,
    prediction: str | None = None,
    admission: str | None = None,
) -> ClusterConfig:
    """``config`` with the preset ``policy`` (the one meaning of a policy name, shared with the
    demo and the experiment), then every component given explicitly (not ``None``)."""
    if policy is not None:
        config = with_policy(config, policy)
    config = replace(
        config,
        placement=placement or config.placement,
        rescheduler=rescheduler or config.rescheduler,
        prediction=prediction or config.prediction,
        admission=admission or config.admission,
    )
    ares_part = "ares" in (config.placement, config.rescheduler)
    if policy is None and ares_part and config.prediction == "none":
        typer.echo(
            "note: ares components without predictions are not ARES (they fall back to "
            "tokens generated so far); --policy ares runs ARES as the demo and the "
            "experiment do",
            err=True,
        )
    return config


def describe(config: ClusterConfig, policy: str | None) -> str:
    """The decode policy in a few words: the preset's name, or the components that differ
    from the defaults."""
    if policy is not None and config == with_policy(config, policy):
        return f"policy {policy}"
    parts = [config.placement]
    defaults = {"rescheduler": "none", "prediction": "none", "admission": "greedy"}
    parts += [f"{k} {getattr(config, k)}" for k, v in defaults.items() if getattr(config, k) != v]
    return ", ".join(parts)


def _progress_runner(as_json: bool):  # noqa: ANN202
    """A rich progress bar for long runs (silent with --json or off a terminal)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} requests"),
        TimeElapsedColumn(),
        transient=True,
        disable=as_json,
    )
    return progress


def run_simulation(w: Workload, config: ClusterConfig, as_json: bool) -> SimResult:
    if config.num_prefill + config.num_decode > 10_000 or len(w) > 1_000_000:
        # Building the instances alone takes a while; say what is being done before it.
        typer.echo(
            f"simulating {len(w):,} requests on {config.num_prefill:,} prefill and "
            f"{config.num_decode:,} decode instances (a large run: minutes)",
            err=True,
        )
    with _progress_runner(as_json) as progress:
        task = progress.add_task("sim", total=len(w))
        return simulate(w, config, lambda done, total: progress.update(task, completed=done))


def warn_extrapolated(lines: list[str]) -> None:
    """One line on stderr per cost model the run used outside its measured range."""
    for line in lines:
        typer.echo(f"warning: extrapolated beyond the measured range: {line}", err=True)


def goodput_search(w: Workload, config: ClusterConfig, slo: SLO) -> dict[str, Any]:
    """DistServe goodput: highest rate scale with >= 90% attainment, in requests and tokens/s."""
    if slo.is_empty:
        raise ConfigError("--find-goodput needs --slo (for example ttft=2s,tpot=100ms)")

    config = replace(config, record_itl=False, record_timeline=False)  # not read here

    def attainment(scale: float) -> float:
        return float(simulate(scale_rate(w, scale), config).metrics(slo)["slo_attainment"])

    found = find_max_rate_scale(attainment)
    base_rate = len(w) / w.duration_s if w.duration_s > 0 else 0.0
    tokens = float(w.prompt_tokens.sum() + w.output_tokens.sum())
    token_rate = tokens / w.duration_s if w.duration_s > 0 else 0.0
    return {
        "goodput_rate_scale": found.rate_scale,
        "goodput_rps": found.rate_scale * base_rate,
        "goodput_tokens_per_s": found.rate_scale * token_rate,
        "goodput_attainment": found.attainment,
        "goodput_num_runs": found.num_runs,
        # True: every load tried met the SLOs; the figures are the search's cap, a lower bound.
        "goodput_capped": found.capped,
    }


def simulate_command(
    workload: str | None = typer.Option(
        None,
        "--workload",
        "-w",
        help="Embedded workload, trace path, or 'random' (the synthetic options below) "
        "[default: azure-conv].",
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
    request_rate: float | None = typer.Option(None, "--request-rate", help=RANDOM_HELP["rate"]),
    burstiness: float | None = typer.Option(None, "--burstiness", help=RANDOM_HELP["burstiness"]),
    profile: str = typer.Option(
        DEFAULT_PROFILE, "--profile", help="Performance profile name or file."
    ),
    prefill: int = typer.Option(4, "--prefill", help="Number of prefill instances."),
    decode: int = typer.Option(4, "--decode", help="Number of decode instances."),
    dispatch: str = typer.Option(
        "least-queued-tokens",
        "--dispatch",
        help="Prefill dispatch policy: least-queued-tokens, round-robin, cache-aware (longest "
        "cached prefix, with --prefix-cache-tokens; ties by least queued tokens).",
    ),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="Decode policy preset, as in the demo and the experiment: round-robin, least-kv, "
        "llumnix, ares (ares placement + rescheduler, error-model predictions, predictive "
        "admission), ares-oracle. The component options below override its parts.",
    ),
    placement: str | None = typer.Option(
        None,
        "--placement",
        help="Decode placement component: round-robin (default), least-kv, least-requests, ares.",
    ),
    rescheduler: str | None = typer.Option(
        None,
        "--rescheduler",
        help="Decode rescheduler component: none (default), llumnix, ares. "
        "'ares' here is the rescheduler alone; --policy ares is the whole ARES.",
    ),
    prediction: str | None = typer.Option(
        None,
        "--prediction",
        help="Remaining-length predictions: none (default), oracle, noise:SIGMA, "
        "error-model[:PATH].",
    ),
    admission: str | None = typer.Option(
        None,
        "--admission",
        help="Decode admission: greedy (default, as vLLM) or predictive (needs predictions).",
    ),
    admission_order: str = typer.Option(
        "fcfs",
        "--admission-order",
        help="Order of each decode instance's waiting queue: fcfs (default, as vLLM) or "
        "shortest-predicted (arrival + predicted remaining tokens / --admission-aging; needs "
        "predictions).",
    ),
    admission_aging: float = typer.Option(
        DEFAULT_AGING_TOKENS_PER_S,
        "--admission-aging",
        help="shortest-predicted's aging, tokens/s: a request predicted to need r more tokens "
        "lets requests arriving up to r / aging seconds later go first.",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the run's random draws (prediction noise, --prefill-cv) and of the "
        "synthetic workload.",
    ),
    prefill_cv: float = typer.Option(
        0.0,
        "--prefill-cv",
        help="Coefficient of variation of prefill iteration times around the cost model "
        "(gamma, mean kept; 0 = deterministic).",
    ),
    rate_scale: float = typer.Option(1.0, "--rate-scale", help="Multiply the arrival rate."),
    num_requests: int | None = typer.Option(
        None,
        "--num-requests",
        "--num-prompts",
        help="Use only the first N requests of a trace; the synthetic workload's count "
        "[default: 1000].",
    ),
    max_batch: int = typer.Option(256, "--max-batch", help="Decode batch size limit."),
    prefill_budget: int = typer.Option(
        8192, "--prefill-budget", help="Prefill batch token budget."
    ),
    chunk_tokens: int | None = typer.Option(None, *CHUNK_NAMES, help=CHUNK_HELP),
    prefix_cache_tokens: int | None = typer.Option(None, PREFIX_NAME, help=PREFIX_HELP),
    slo_text: str | None = typer.Option(None, "--slo", "--goodput", help=SLO_HELP + "."),
    exact: bool = typer.Option(False, "--exact", help="Step token by token (slow; for checking)."),
    find_goodput: bool = typer.Option(
        False, "--find-goodput", help="Search the highest load with >= 90% attainment."
    ),
    timeline: Path | None = typer.Option(
        None,
        "--timeline",
        help="Plot per-instance batch and KV use to this file (.png, .svg, .pdf; directories "
        "are created).",
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed trace rows."),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Simulate a workload on a P/D cluster; print vLLM-style metrics."""
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise ConfigError(f"--rate-scale must be a finite number > 0, got {rate_scale}")
    slo = parse_slo(slo_text) if slo_text is not None else SLO()
    timeline = plot_path(timeline, "--timeline")
    cost = load_cost_model(profile)
    config = ClusterConfig(
        num_prefill=prefill,
        num_decode=decode,
        prefill_cost=cost,
        decode_cost=cost,
        max_batch_size=max_batch,
        prefill_token_budget=prefill_budget,
        chunk_tokens=chunk_tokens,
        prefix_cache_tokens=checked_prefix_cache(prefix_cache_tokens),
        dispatch=dispatch,
        exact=exact,
        record_timeline=timeline is not None,
        seed=seed,
        prefill_cv=prefill_cv,
        record_itl=True,
    )
    config = decode_policy(
        config,
        policy,
        placement=placement,
        rescheduler=rescheduler,
        prediction=prediction,
        admission=admission,
    )
    config = replace(
        config, admission_order=admission_order, admission_aging_tokens_per_s=admission_aging
    )
    flags = RandomFlags(
        random_input_len, random_output_len, random_range_ratio, request_rate, burstiness
    )
    w = prepare_workload(workload, rate_scale, num_requests, skip_bad, flags, seed)
    found: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Said once after the run, from what it used (result.extrapolations), instead.
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        result = run_simulation(w, config, as_json)
        if find_goodput:
            found = goodput_search(w, config, slo)
    metrics = result.metrics(slo)
    metrics["extrapolated"] = result.extrapolations()
    metrics.update(
        {"workload": w.name, "profile": profile, "num_prefill": prefill, "num_decode": decode}
    )
    metrics.update(policy=policy, **{k: getattr(config, k) for k in COMPONENTS})
    if find_goodput:
        metrics.update(found)
    if timeline is not None:
        from tandem.sim.plot import plot_timeline

        plot_timeline(result, timeline, policy=describe(config, policy))
    warn_extrapolated(metrics["extrapolated"])
    if as_json:
        print_json(metrics)
        if timeline is not None:
            typer.echo(f"plot written to {timeline}", err=True)
        return
    shown = {k: metrics[k] for k in SHOWN if metrics.get(k) is not None}
    shown.update({k: v for k, v in metrics.items() if k.startswith("goodput_")})
    print_mapping(f"{w.name} on {prefill}P{decode}D ({profile}, {describe(config, policy)})", shown)
    if timeline is not None:
        typer.echo(f"plot written to {timeline}")
    if metrics.get("goodput_capped"):
        typer.echo(
            f"note: every load the goodput search tried met the SLOs, up to its cap "
            f"(x{metrics['goodput_rate_scale']:g}); the goodput is at least this, not measured",
            err=True,
        )
