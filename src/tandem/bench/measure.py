"""The planning paper's two measurements of a live endpoint, and the profile they make.

1. **Prefill.** Alone: a few requests of ``input_len`` prompt tokens and one output token, one
   at a time: their TTFT. Saturated: many such requests kept in flight so the server never
   idles: prompt tokens finished per second is the maximum prefill throughput at
   ``input_len``. The request overhead (time a request spends outside the prefill's busy
   time: HTTP, tokenization, queues, the first token's trip back) is TTFT alone minus
   ``input_len / max_throughput``.
2. **Decode.** At each concurrency c, c closed-loop clients send ``input_len`` / ``output_len``
   requests (``ignore_eos``); TPOT is their median. The decode batch is what the server
   reports on ``/metrics`` while it runs (``num_requests_running`` of its decode instances,
   averaged over the samples where it is decoding), else c.
3. ``measured_profile`` writes both as a measured-profile mapping (``perf/measured_file.py``):
   what ``tandem plan --measured`` and ``tandem simulate --profile FILE`` read. TPOT is made
   non-decreasing in the batch (a bigger batch cannot step faster: noise is clipped, and the
   raw figures are kept in ``source``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tandem.bench.openloop import RequestSpec, run_requests
from tandem.errors import ConfigError

_METRICS_PERIOD_S = 0.1


@dataclass(frozen=True)
class PrefillMeasurement:
    input_len_tokens: int
    max_throughput_tokens_per_s: float
    ttft_alone_s: float
    overhead_s: float
    num_requests: int


@dataclass(frozen=True)
class DecodeMeasurement:
    concurrency: int
    batch_size: float
    tpot_ms: float
    num_requests: int
    batch_from_metrics: bool


def _ok(result: Any) -> list[Any]:
    return [r for r in result.records if r is not None and r.error is None and r.complete]


async def measure_prefill(
    base_url: str,
    model: str,
    prompt: str | list[int],
    input_len: int,
    *,
    concurrency: int = 16,
    num_requests: int = 64,
    headers: dict[str, str] | None = None,
) -> PrefillMeasurement:
    """Maximum prefill throughput at ``input_len`` and the request overhead."""
    alone = [RequestSpec(0.0, prompt, 1) for _ in range(5)]
    first = await run_requests(
        base_url, model, alone, max_concurrency=1, ignore_eos=True, headers=headers
    )
    saturated = [RequestSpec(0.0, prompt, 1) for _ in range(num_requests)]
    loaded = await run_requests(
        base_url, model, saturated, max_concurrency=concurrency, ignore_eos=True, headers=headers
    )
    done_alone, done_loaded = _ok(first), _ok(loaded)
    if not done_alone or len(done_loaded) < num_requests // 2:
        raise ConfigError(
            f"prefill measurement failed at {base_url}: "
            f"{len(done_loaded)} of {num_requests} requests completed"
        )
    ttft = statistics.median(r.record().ttft_s for r in done_alone)
    # Throughput over the window where the server was kept busy: first to last answer.
    ends = sorted(r.chunk_times_s[0] for r in done_loaded)
    span = ends[-1] - min(r.arrival_s for r in done_loaded)
    throughput = len(done_loaded) * input_len / span
    return PrefillMeasurement(
        input_len, throughput, ttft, max(0.0, ttft - input_len / throughput), len(done_loaded)
    )


async def _sample_batch(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    """Decode batch sizes read from ``/metrics`` until ``stop`` (empty without /metrics)."""
    samples: list[float] = []
    while not stop.is_set():
        try:
            text = (await client.get("/metrics")).text
        except httpx.HTTPError:
            return samples
        running = _decode_running(text)
        if running is None:
            return samples
        if running:
            samples.append(sum(running) / len(running))
        await asyncio.sleep(_METRICS_PERIOD_S)
    return samples


def _decode_running(text: str) -> list[float] | None:
    """Running requests of each decode instance that is decoding; ``None`` if the server does
    not report ``num_requests_running`` (Tandem: role="decode"; vLLM: every instance)."""
    found = False
    values: list[float] = []
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if not name.endswith("num_requests_running"):
            continue
        found = True
        if 'role="prefill"' in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if value > 0:
            values.append(value)
    return values if found else None


async def measure_decode(
    base_url: str,
    model: str,
    prompt: str | list[int],
    input_len: int,
    output_len: int,
    concurrency: int,
    *,
    rounds: int = 3,
    headers: dict[str, str] | None = None,
) -> DecodeMeasurement:
    """TPOT at ``concurrency`` closed-loop clients and the decode batch it makes."""
    specs = [RequestSpec(0.0, prompt, output_len) for _ in range(concurrency * rounds)]
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as client:
        sampler = asyncio.create_task(_sample_batch(client, stop))
        result = await run_requests(
            base_url, model, specs, max_concurrency=concurrency, ignore_eos=True, headers=headers
        )
        stop.set()
        samples = await sampler
    done = [r for r in _ok(result) if r.record().tpot_s is not None]
    if not done:
        raise ConfigError(f"decode measurement at concurrency {concurrency} failed at {base_url}")
    tpot = statistics.median(r.record().tpot_s for r in done)
    batch = statistics.mean(samples) if samples else float(concurrency)
    return DecodeMeasurement(concurrency, batch, tpot * 1e3, len(done), bool(samples))


def measured_profile(
    *,
    name: str,
    model: str,
    hardware: str,
    source: str,
    prefill: PrefillMeasurement,
    decode: Sequence[DecodeMeasurement],
    kv_bytes_per_token: int,
    kv_capacity_tokens: int,
) -> dict[str, Any]:
    """A measured-profile mapping (validated by ``perf.measured_file``)."""
    points: list[dict[str, float | int]] = []
    for d in sorted(decode, key=lambda d: d.batch_size):
        batch = max(1, round(d.batch_size))
        tpot = max([d.tpot_ms] + [float(p["tpot_ms"]) for p in points])  # non-decreasing
        if points and batch <= int(points[-1]["batch_size"]):
            points[-1]["tpot_ms"] = round(max(float(points[-1]["tpot_ms"]), tpot), 3)
            continue
        points.append({"batch_size": batch, "tpot_ms": round(tpot, 3)})
    raw = "; ".join(
        f"c={d.concurrency}: batch {d.batch_size:.1f}, TPOT {d.tpot_ms:.2f} ms" for d in decode
    )
    return {
        "name": name,
        "model": model,
        "hardware": hardware,
        "num_gpus": 1,
        "source": f"{source}; measured {time.strftime('%Y-%m-%d')}; raw decode: {raw}",
        "prefill": {
            "overhead_s": round(prefill.overhead_s, 6),
            "points": [
                {
                    "input_len_tokens": prefill.input_len_tokens,
                    "max_throughput_tokens_per_s": round(prefill.max_throughput_tokens_per_s, 1),
                }
            ],
        },
        "decode": {"points": points},
        "kv": {"bytes_per_token": kv_bytes_per_token, "capacity_tokens": kv_capacity_tokens},
    }


def capacity_rps(
    profile: dict[str, Any], mean_prompt: float, mean_output: float, num_decode: int = 1
) -> float:
    """Requests per second a 1P``num_decode``D cluster of a measured profile (a mapping from
    ``measured_profile``) sustains: the lower of prefill's throughput at its measured length and
    decode's throughput at its largest measured batch."""
    prefill = profile["prefill"]["points"][0]["max_throughput_tokens_per_s"] / mean_prompt
    top = profile["decode"]["points"][-1]
    decode = num_decode * top["batch_size"] / (top["tpot_ms"] / 1e3) / mean_output
    return min(prefill, decode)
