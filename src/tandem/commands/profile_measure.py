"""``tandem profile measure``: the planning paper's two measurements of a live endpoint.

1. Ask the server what it serves and its context; make a prompt of ``--input-len`` tokens.
2. Prefill: maximum throughput at that length and the request overhead (``bench.measure``).
3. Decode: TPOT at each ``--concurrency``, with the batch the server reports.
4. Print both, write the measured profile (``--out``, YAML), draw them (``--plot``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml

from tandem.commands._output import print_table
from tandem.commands.bench import Endpoint, number_list
from tandem.errors import ConfigError


def _levels(text: str) -> list[int]:
    levels = sorted(set(number_list(text, "--concurrency", int)))
    if not levels or levels[0] < 1:
        raise ConfigError(f"--concurrency: every level must be >= 1, got {text!r}")
    return levels


def kv_from_metrics(endpoint: Endpoint) -> tuple[int | None, int | None]:
    """(bytes per token, capacity tokens) of a decode instance, if ``/metrics`` says."""
    try:
        text = endpoint.client.get("/metrics").text
    except httpx.HTTPError:
        return None, None
    found: dict[str, int] = {}
    for line in text.splitlines():
        for key in ("kv_cache_bytes_per_token", "kv_cache_capacity_tokens"):
            if line.split("{", 1)[0].endswith(key) and key not in found:
                found[key] = int(float(line.rsplit(" ", 1)[1]))
    return found.get("kv_cache_bytes_per_token"), found.get("kv_cache_capacity_tokens")


def run_measure(
    *,
    base_url: str,
    input_len: int,
    output_len: int,
    concurrency: str,
    model: str | None,
    prefill_concurrency: int,
    kv_bytes_per_token: int | None,
    kv_capacity_tokens: int | None,
    name: str | None,
    hardware: str,
    api_key: str | None,
    out: Path | None,
    plot: Path | None,
) -> None:
    from tandem.bench.measure import measure_decode, measure_prefill, measured_profile
    from tandem.perf.measured_file import measured_from_mapping

    levels = _levels(concurrency)
    if input_len < 1 or output_len < 2:
        raise ConfigError("--input-len must be >= 1 and --output-len >= 2 (TPOT needs 2 tokens)")
    if prefill_concurrency < 1:
        raise ConfigError(f"--prefill-concurrency must be >= 1, got {prefill_concurrency}")
    endpoint = Endpoint(base_url, api_key)
    served, context = endpoint.model(model)
    if context is not None and input_len + output_len > context:
        raise ConfigError(
            f"--input-len + --output-len ({input_len + output_len}) exceeds the "
            f"model's context ({context} tokens)"
        )
    base = endpoint.base_token_ids(served)
    prompt: str | list[int] = (
        [base[i % len(base)] for i in range(input_len)] if base else " ".join(["hi"] * input_len)
    )
    bytes_per_token, capacity = kv_from_metrics(endpoint)
    bytes_per_token = kv_bytes_per_token or bytes_per_token
    capacity = kv_capacity_tokens or capacity
    if not bytes_per_token or not capacity:
        raise ConfigError(
            "the server does not report its KV cache on /metrics: give "
            "--kv-bytes-per-token and --kv-capacity-tokens"
        )
    headers = endpoint.headers
    url = endpoint.base_url
    typer.echo(f"measuring {served} at {url}: prefill at {input_len} tokens ...")
    prefill = asyncio.run(
        measure_prefill(
            url, served, prompt, input_len, concurrency=prefill_concurrency, headers=headers
        )
    )
    decode = []
    for c in levels:
        typer.echo(f"  decode at concurrency {c} ...")
        decode.append(
            asyncio.run(
                measure_decode(url, served, prompt, input_len, output_len, c, headers=headers)
            )
        )
    print_table(
        f"prefill of {served} at {input_len} tokens",
        ["", "value"],
        [
            ["max throughput tokens/s", f"{prefill.max_throughput_tokens_per_s:,.0f}"],
            ["TTFT alone ms", f"{prefill.ttft_alone_s * 1e3:.1f}"],
            ["request overhead ms", f"{prefill.overhead_s * 1e3:.1f}"],
        ],
    )
    print_table(
        f"decode of {served}: TPOT against batch",
        ["clients", "batch", "TPOT ms", "requests"],
        [
            [
                str(d.concurrency),
                f"{d.batch_size:.1f}" + ("" if d.batch_from_metrics else "*"),
                f"{d.tpot_ms:.2f}",
                str(d.num_requests),
            ]
            for d in decode
        ],
    )
    if not all(d.batch_from_metrics for d in decode):
        typer.echo("* the server reported no batch on /metrics: the number of clients is used")
    doc = measured_profile(
        name=name or f"measured-{served}",
        model=served,
        hardware=hardware,
        source=f"tandem profile measure against {url}",
        prefill=prefill,
        decode=decode,
        kv_bytes_per_token=bytes_per_token,
        kv_capacity_tokens=capacity,
    )
    measured_from_mapping(doc, "the measured profile")  # what plan/simulate will accept
    if out is not None:
        out.write_text(yaml.safe_dump(doc, sort_keys=False))
        typer.echo(f"wrote {out} (tandem plan --measured {out}; tandem simulate --profile {out})")
    if plot is not None:
        _plot(plot, served, prefill, decode, doc)
        typer.echo(f"wrote {plot}")


def _plot(path: Path, served: str, prefill: Any, decode: list[Any], doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar([str(prefill.input_len_tokens)], [prefill.max_throughput_tokens_per_s])
    left.set_xlabel("prompt tokens")
    left.set_ylabel("max prefill throughput (tokens/s)")
    left.set_title(f"prefill (overhead {prefill.overhead_s * 1e3:.0f} ms)")
    right.plot([d.batch_size for d in decode], [d.tpot_ms for d in decode], "o", label="measured")
    points = doc["decode"]["points"]
    right.plot(
        [p["batch_size"] for p in points],
        [p["tpot_ms"] for p in points],
        "-",
        label="profile (non-decreasing)",
    )
    right.set_xlabel("decode batch (requests)")
    right.set_ylabel("TPOT (ms)")
    right.set_title("decode")
    right.legend()
    fig.suptitle(f"tandem profile measure: {served}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
