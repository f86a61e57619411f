"""``tandem bench serve``: measure any OpenAI-compatible endpoint, with vLLM's flag names.

1. Ask the server what it serves (``/v1/models``: model name, context length) and whether it
   tokenizes (``/tokenize``: then prompts are token ids of exactly the wanted length).
2. Check that it accepts ``ignore_eos`` with one tiny request; a server that refuses it (
   ``transformers serve`` answers 422) is used without it, with a warning: real output lengths
   are recorded either way.
3. Build the requests: a trace (arrival times kept, ``--rate-scale``) or synthetic lengths and
   arrivals (``--random-input-len``, ``--request-rate``, ``--burstiness``), clipped into the
   model's context; send them open loop (``--max-concurrency`` caps requests in flight).
4. Print vLLM's metrics (``tandem.metrics``, the simulator's code), with goodput under
   ``--goodput`` or ``--slo``; ``--json`` and ``--save-requests`` write them out.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tandem.commands._output import plot_path, print_table
from tandem.errors import ConfigError
from tandem.metrics.serving import SLO, RequestRecord, compute_metrics, parse_slo

app = typer.Typer(help="Measure OpenAI-compatible endpoints.", no_args_is_help=True)
_PROBE_TIMEOUT_S = 30.0
_BASE_TEXT = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park with her friends. One day, she saw a big red ball under a tree and ran to get it. "
)


def parse_goodput(text: str) -> SLO:
    """vLLM's ``--goodput ttft:2000 tpot:50`` (milliseconds) as an ``SLO``."""
    kwargs: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition(":")
        key = key.strip().lower().replace("e2el", "e2e")
        if not sep or key not in ("ttft", "tpot", "e2e"):
            raise ConfigError(f"bad --goodput item {item!r}; use e.g. 'ttft:2000 tpot:50' (ms)")
        try:
            ms = float(value)
        except ValueError:
            raise ConfigError(f"bad --goodput value in {item!r}: not a number") from None
        if not math.isfinite(ms) or ms <= 0:
            raise ConfigError(f"bad --goodput value in {item!r}: must be > 0 ms")
        if f"{key}_s" in kwargs:
            raise ConfigError(f"--goodput names {key} twice")
        kwargs[f"{key}_s"] = ms / 1000.0
    if not kwargs:
        raise ConfigError("--goodput is empty; use e.g. 'ttft:2000 tpot:50' (ms)")
    return SLO(**kwargs)


def number_list(text: str, flag: str, kind: type[float] | type[int] = float) -> list[Any]:
    """``"1,2.5,4"`` as numbers of ``kind``; an error naming ``flag`` if one is not a number."""
    noun = "integers" if kind is int else "numbers"
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected {noun} separated by commas, got {text!r}") from None


def _floats(text: str, flag: str) -> list[float]:
    values = number_list(text, flag)
    if not values or not all(0 < v < 100 for v in values):
        raise ConfigError(f"{flag}: percentiles must be in (0, 100), got {text!r}")
    return values


class Endpoint:
    """What a server says about itself."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=self.base_url, timeout=_PROBE_TIMEOUT_S, headers=self.headers
        )

    def model(self, wanted: str | None) -> tuple[str, int | None]:
        try:
            response = self.client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach {self.base_url}: {exc}") from None
        if response.status_code != 200:
            raise ConfigError(f"{self.base_url}/v1/models answered HTTP {response.status_code}")
        cards = response.json().get("data") or []
        if not cards:
            raise ConfigError(f"{self.base_url} serves no model")
        names = [str(c.get("id")) for c in cards]
        name = wanted or names[0]
        card = next((c for c in cards if c.get("id") == name), None)
        if card is None:
            raise ConfigError(f"model '{name}' is not served at {self.base_url}; it serves {names}")
        context = card.get("max_model_len")
        return name, int(context) if isinstance(context, int) else None

    def base_token_ids(self, model: str) -> list[int] | None:
        try:
            response = self.client.post("/tokenize", json={"model": model, "prompt": _BASE_TEXT})
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        tokens = response.json().get("tokens")
        return [int(t) for t in tokens] if isinstance(tokens, list) and tokens else None

    def accepts_ignore_eos(self, model: str, prompt: str | list[int]) -> bool:
        body = {"model": model, "prompt": prompt, "max_tokens": 1, "ignore_eos": True}
        try:
            response = self.client.post("/v1/completions", json=body)
        except httpx.HTTPError as exc:
            raise ConfigError(f"{self.base_url}/v1/completions failed: {exc}") from None
        if response.status_code == 200:
            return True
        if response.status_code in (400, 422):
            return False
        raise ConfigError(
            f"{self.base_url}/v1/completions answered HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )


@app.command("serve")
def bench_serve(
    base_url: str = typer.Option(..., help="The server, e.g. http://127.0.0.1:8000"),
    model: str = typer.Option(None, help="Model name (default: the first /v1/models lists)."),
    workload: str = typer.Option(
        None,
        "--workload",
        "-w",
        help="A trace (embedded name or file) to replay; default: synthetic random lengths.",
    ),
    rate_scale: float = typer.Option(1.0, help="Replay the trace this many times faster."),
    num_prompts: int = typer.Option(
        100, help="Requests to send (synthetic, or the trace's first N)."
    ),
    request_rate: float = typer.Option(
        math.inf, help="Synthetic arrivals per second (inf: all at once)."
    ),
    burstiness: float = typer.Option(
        1.0, help="Gamma shape of inter-arrival gaps (1: Poisson; lower is burstier)."
    ),
    max_concurrency: int = typer.Option(
        None, help="Most requests in flight (with an infinite rate: a closed loop)."
    ),
    random_input_len: int = typer.Option(128, help="Synthetic prompt tokens."),
    random_output_len: int = typer.Option(128, help="Synthetic output tokens."),
    random_range_ratio: float = typer.Option(0.0, help="Lengths uniform in [L(1-r), L(1+r)]."),
    duration: float = typer.Option(None, help="Stop sending after this many seconds."),
    ignore_eos: bool = typer.Option(
        True, help="Force output lengths with ignore_eos where the server accepts it."
    ),
    goodput: str = typer.Option(None, help="vLLM form, milliseconds: 'ttft:2000 tpot:50'."),
    slo: str = typer.Option(None, help="Tandem form: ttft=2s,tpot=100ms (bare numbers: ms)."),
    metric_percentiles: str = typer.Option("50,90,99", help="Percentiles to report."),
    percentile_metrics: str = typer.Option("ttft,tpot,itl,e2el", help="Metrics to print."),
    seed: int = typer.Option(0, help="Seed of the synthetic workload."),
    timeout: float = typer.Option(300.0, help="Seconds each request may take."),
    api_key: str = typer.Option(None, help="Bearer token for the server."),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics here (JSON)."),
    save_requests: Path = typer.Option(
        None,
        help="Write one JSON line per completed request "
        "(Mooncake keys: tandem trace stats / simulate -w read "
        "it) with its timestamps.",
    ),
) -> None:
    """Send a workload to an OpenAI-compatible server and report vLLM's serving metrics."""
    percentiles = _floats(metric_percentiles, "--metric-percentiles")
    shown = [m.strip() for m in percentile_metrics.split(",") if m.strip()]
    bad = sorted(set(shown) - {"ttft", "tpot", "itl", "e2el"})
    if bad:
        raise ConfigError(f"--percentile-metrics: unknown {bad}; use ttft, tpot, itl, e2el")
    if goodput and slo:
        raise ConfigError("give --goodput or --slo, not both")
    target = parse_goodput(goodput) if goodput else parse_slo(slo) if slo else None
    if num_prompts < 1:
        raise ConfigError(f"--num-prompts must be >= 1, got {num_prompts}")
    endpoint = Endpoint(base_url, api_key)
    name, context = endpoint.model(model)
    base_ids = endpoint.base_token_ids(name)
    requests = _workload(
        workload,
        num_prompts,
        request_rate,
        burstiness,
        random_input_len,
        random_output_len,
        random_range_ratio,
        seed,
    )
    from tandem.bench.openloop import plan_requests

    planned = plan_requests(
        requests, context_tokens=context or 1 << 30, base_token_ids=base_ids, rate_scale=rate_scale
    )
    if planned.num_clipped:
        typer.echo(f"note: {planned.num_clipped} requests cut to fit the {context}-token context")
    if base_ids is None:
        typer.echo(
            "note: the server has no /tokenize; prompts are words, real prompt lengths "
            "come from its usage"
        )
    if ignore_eos and not endpoint.accepts_ignore_eos(name, planned.specs[0].prompt):
        typer.echo(
            "warning: the server refuses ignore_eos; outputs may end early (real "
            "lengths are reported)",
            err=True,
        )
        ignore_eos = False
    result = _send(endpoint, name, planned, max_concurrency, ignore_eos, timeout, duration)
    _report(name, planned, result, target, percentiles, shown, json_out, save_requests)


def _send(
    endpoint: Endpoint,
    name: str,
    planned: Any,
    max_concurrency: int | None,
    ignore_eos: bool,
    timeout: float,
    duration: float | None,
) -> Any:
    """Send the planned requests with a progress bar; the run's ``RunResult``."""
    from tandem.bench.openloop import run_requests

    with Progress(
        TextColumn("requests"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("requests", total=len(planned.specs))
        return asyncio.run(
            run_requests(
                endpoint.base_url,
                name,
                planned.specs,
                max_concurrency=max_concurrency,
                ignore_eos=ignore_eos,
                timeout_s=timeout,
                duration_s=duration,
                headers=endpoint.headers,
                on_done=lambda _: progress.advance(task),
            )
        )


def _metrics(
    name: str, planned: Any, result: Any, target: SLO | None, percentiles: list[float]
) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """vLLM's metrics of a run (failed requests count against attainment), the completed
    streams, and the load generator's summary (errors, samples)."""
    from tandem.bench.load import summarize

    sent = [r for r in result.records if r is not None]
    summary = summarize(sent, 0, result.duration_s)
    good = [r for r in sent if r.error is None and r.complete]
    records = [r.record() for r in good]
    metrics = compute_metrics(
        records,
        duration_s=result.duration_s,
        slo=target,
        num_failed=len(sent) - len(good),
        percentiles=percentiles,
    )
    metrics.update(
        model=name,
        num_prompts=len(planned.specs),
        num_sent=len(sent),
        num_not_sent=len(planned.specs) - len(sent),
        num_errors=summary["num_errors"],
        num_incomplete=summary["num_incomplete"],
        error_samples=summary["error_samples"],
        num_clipped=planned.num_clipped,
        max_concurrency_reached=_peak(good),
    )
    return metrics, good, summary


def _workload(
    spec: str | None,
    n: int,
    rate: float,
    burstiness: float,
    input_len: int,
    output_len: int,
    ratio: float,
    seed: int,
) -> Any:
    from tandem.workload import load_workload
    from tandem.workload.request import Workload
    from tandem.workload.synthetic import FixedLength, UniformLength, synthetic_workload

    if spec is not None:
        w = load_workload(spec)
        return Workload(w.name, w.requests[:n], w.notes)
    if not 0 <= ratio < 1:
        raise ConfigError(f"--random-range-ratio must be in [0, 1), got {ratio}")
    if burstiness <= 0:
        raise ConfigError(f"--burstiness must be > 0, got {burstiness}")

    def dist(length: int) -> Any:
        if ratio == 0:
            return FixedLength(length)
        return UniformLength(max(1, int(length * (1 - ratio))), max(1, int(length * (1 + ratio))))

    if rate == math.inf:
        w = synthetic_workload(
            num_requests=n,
            rate_rps=1.0,
            input_len=dist(input_len),
            output_len=dist(output_len),
            seed=seed,
        )
        return Workload(w.name, tuple(_at_zero(r) for r in w.requests), w.notes)
    return synthetic_workload(
        num_requests=n,
        rate_rps=rate,
        input_len=dist(input_len),
        output_len=dist(output_len),
        cv=1 / math.sqrt(burstiness),
        seed=seed,
    )


def _at_zero(request: Any) -> Any:
    from dataclasses import replace

    return replace(request, arrival_s=0.0)


def _report(
    name: str,
    planned: Any,
    result: Any,
    target: SLO | None,
    percentiles: list[float],
    shown: list[str],
    json_out: Path | None,
    save_requests: Path | None,
) -> None:
    metrics, good, summary = _metrics(name, planned, result, target, percentiles)
    rows = [
        ["completed", f"{metrics['completed']} of {len(planned.specs)}"],
        ["failed", str(metrics["failed"])],
        ["duration s", f"{metrics['duration']:.2f}"],
        ["request throughput req/s", f"{metrics['request_throughput']:.2f}"],
        ["output throughput tok/s", f"{metrics['output_throughput']:.1f}"],
        ["peak concurrency", str(metrics["max_concurrency_reached"])],
    ]
    if target is not None:
        rows += [
            ["SLO attainment", f"{metrics['slo_attainment']:.3f}"],
            ["goodput req/s", f"{metrics['request_goodput']:.2f}"],
        ]
    for key in shown:
        if f"mean_{key}_ms" not in metrics:
            continue
        rows.append([f"{key.upper()} mean ms", f"{metrics[f'mean_{key}_ms']:.2f}"])
        for p in percentiles:
            label = f"{p:g}".replace(".", "_")
            rows.append([f"{key.upper()} p{p:g} ms", f"{metrics[f'p{label}_{key}_ms']:.2f}"])
    print_table(f"tandem bench serve: {name}", ["metric", "value"], rows)
    for sample in summary["error_samples"]:
        typer.echo(f"  failed: {sample}", err=True)
    if json_out is not None:
        json_out.write_text(json.dumps(metrics, indent=2) + "\n")
    if save_requests is not None:
        _save_requests(save_requests, good, result.start_s)


def _peak(records: list[Any]) -> int:
    events = sorted(
        [(r.arrival_s, 1) for r in records] + [(r.chunk_times_s[-1], -1) for r in records]
    )
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _save_requests(path: Path, records: list[Any], start_s: float) -> None:
    with path.open("w") as fh:
        for r in records:
            rec: RequestRecord = r.record()
            row = {
                "timestamp": round((rec.arrival_s - start_s) * 1000.0, 3),
                "input_length": max(1, rec.prompt_tokens),
                "output_length": max(1, rec.output_tokens),
                "ttft_s": rec.ttft_s,
                "e2e_s": rec.e2e_s,
                "tpot_s": rec.tpot_s,
                "finish_reason": r.finish_reason,
            }
            fh.write(json.dumps(row) + "\n")


@app.command("sweep")
def bench_sweep(
    base_url: str = typer.Option(..., help="The server, e.g. http://127.0.0.1:8000"),
    rates: str = typer.Option(None, help="Synthetic request rates (req/s), e.g. 2,4,8."),
    rate_scales: str = typer.Option(
        None, help="With -w: replay the trace this many times faster, e.g. 0.5,1,2."
    ),
    model: str = typer.Option(None, help="Model name (default: the first /v1/models lists)."),
    workload: str = typer.Option(None, "--workload", "-w", help="A trace to replay."),
    num_prompts: int = typer.Option(100, help="Requests per load level."),
    burstiness: float = typer.Option(1.0, help="Gamma shape of inter-arrival gaps."),
    random_input_len: int = typer.Option(128, help="Synthetic prompt tokens."),
    random_output_len: int = typer.Option(128, help="Synthetic output tokens."),
    random_range_ratio: float = typer.Option(0.0, help="Lengths uniform in [L(1-r), L(1+r)]."),
    goodput: str = typer.Option(None, help="vLLM form, milliseconds: 'ttft:2000 tpot:50'."),
    slo: str = typer.Option(None, help="Tandem form: ttft=2s,tpot=100ms (bare numbers: ms)."),
    ignore_eos: bool = typer.Option(True, help="Force output lengths where accepted."),
    seed: int = typer.Option(0, help="Seed of the synthetic workload."),
    timeout: float = typer.Option(300.0, help="Seconds each request may take."),
    api_key: str = typer.Option(None, help="Bearer token for the server."),
    json_out: Path = typer.Option(None, "--json", help="Write every level's metrics (JSON)."),
    plot: Path | None = typer.Option(
        None,
        help="Attainment (with the 90% line) and latency percentiles (with the SLO) against "
        "load: .png, .svg or .pdf; missing directories are created.",
    ),
) -> None:
    """SLO attainment, goodput and latency percentiles against load, one run per level."""
    plot = plot_path(plot, "--plot")  # the one plot rule, checked before any request
    if goodput and slo:
        raise ConfigError("give --goodput or --slo, not both")
    target = parse_goodput(goodput) if goodput else parse_slo(slo) if slo else None
    if target is None:
        raise ConfigError("a sweep needs an SLO: --goodput 'ttft:2000 tpot:50' or --slo ...")
    if workload is None and not rates:
        raise ConfigError("give --rates (synthetic) or -w TRACE --rate-scales")
    if workload is not None and not rate_scales:
        raise ConfigError("with -w, give --rate-scales (how much faster to replay)")
    levels = _positive(rate_scales if workload is not None else rates, "--rates")
    endpoint = Endpoint(base_url, api_key)
    name, context = endpoint.model(model)
    base_ids = endpoint.base_token_ids(name)
    from tandem.bench.openloop import plan_requests

    rows: list[dict[str, Any]] = []
    for level in levels:
        rate = math.inf if workload is not None else level
        requests = _workload(
            workload,
            num_prompts,
            rate,
            burstiness,
            random_input_len,
            random_output_len,
            random_range_ratio,
            seed,
        )
        planned = plan_requests(
            requests,
            context_tokens=context or 1 << 30,
            base_token_ids=base_ids,
            rate_scale=level if workload is not None else 1.0,
        )
        if ignore_eos and not endpoint.accepts_ignore_eos(name, planned.specs[0].prompt):
            typer.echo("warning: the server refuses ignore_eos; outputs may end early", err=True)
            ignore_eos = False
        typer.echo(f"level {level:g} ...")
        result = _send(endpoint, name, planned, None, ignore_eos, timeout, None)
        metrics, _, _ = _metrics(name, planned, result, target, [50, 90, 99])
        metrics["level"] = level
        rows.append(metrics)
    unit = "x trace" if workload is not None else "req/s"
    print_table(
        f"tandem bench sweep: {name}, SLO attainment and latency against load",
        [
            f"load {unit}",
            "reached req/s",
            "attain",
            "goodput",
            "TTFT p50/p90/p99 ms",
            "TPOT p50/p90/p99 ms",
        ],
        [
            [
                f"{m['level']:g}",
                f"{m['request_throughput']:.2f}",
                f"{m['slo_attainment']:.3f}",
                f"{m['request_goodput']:.2f}",
                f"{m['median_ttft_ms']:.0f}/{m['p90_ttft_ms']:.0f}/{m['p99_ttft_ms']:.0f}",
                f"{m['median_tpot_ms']:.1f}/{m['p90_tpot_ms']:.1f}/{m['p99_tpot_ms']:.1f}",
            ]
            for m in rows
        ],
    )
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=2) + "\n")
    if plot is not None:
        _plot_sweep(plot, name, unit, rows, target)
        typer.echo(f"plot written to {plot}")


def _positive(text: str, flag: str) -> list[float]:
    values = number_list(text, flag)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"{flag}: every level must be a number > 0, got {text!r}")
    return sorted(values)


def _plot_sweep(path: Path, name: str, unit: str, rows: list[dict[str, Any]], slo: SLO) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [m["level"] for m in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(x, [m["slo_attainment"] for m in rows], "o-")
    axes[0].axhline(0.9, color="grey", linestyle="--", label="90%")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("SLO attainment")
    for ax, key, limit in ((axes[1], "ttft", slo.ttft_s), (axes[2], "tpot", slo.tpot_s)):
        for p in (50, 90, 99):
            label = "median" if p == 50 else f"p{p}"
            field = f"median_{key}_ms" if p == 50 else f"p{p}_{key}_ms"
            ax.plot(x, [m[field] for m in rows], "o-", label=label)
        if limit is not None:
            ax.axhline(limit * 1e3, color="red", linestyle="--", label="SLO")
        ax.set_ylabel(f"{key.upper()} (ms)")
    for ax in axes:
        ax.set_xlabel(f"load ({unit})")
        ax.legend()
    fig.suptitle(f"tandem bench sweep: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
