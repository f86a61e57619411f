"""Closed-loop load against any OpenAI-compatible server: vLLM-style latency and throughput.

1. ``concurrency`` clients each send one streaming ``POST /v1/completions`` at a time and send
   the next as soon as the last one ends, until ``num_requests`` have been sent (closed loop).
2. Each stream is read as server-sent events (``data: {json}`` lines): the arrival time of every
   chunk with text, the ``finish_reason``, and the usage (``stream_options.include_usage``).
   Servers differ in where usage arrives (vLLM: an extra chunk with empty ``choices``;
   ``transformers serve``: on the last content chunk) and whether ``data: [DONE]`` follows.
3. Output tokens come from the usage's ``completion_tokens``; without usage, from the number of
   chunks with text. TTFT is the first chunk with text; ITL the gaps between such chunks.
4. A request that fails (HTTP status, error event, timeout, connection error) is an *error*; a
   stream that ends without a ``finish_reason`` or ``[DONE]``, or without any text, is
   *incomplete*. Both count as failed in the metrics (``failed``) and are reported apart.
5. ``tandem.metrics.serving.compute_metrics`` turns the records into vLLM's JSON keys
   (``output_throughput``, ``p99_ttft_ms``, ``median_tpot_ms``, ``p99_itl_ms``, ...).

``ignore_eos`` False leaves the field out of the request: ``transformers serve`` answers 422 to
fields it does not know.

Used by ``tandem demo`` and ``benchmarks/serve_load.py`` (its command line).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tandem.metrics.serving import RequestRecord, compute_metrics

DEFAULT_PROMPT = "Once upon a time, there was a little girl"
_MAX_ERROR_SAMPLES = 5


@dataclass
class StreamRecord:
    """What one request's stream showed; ``error`` set means it failed outright."""

    arrival_s: float
    chunk_times_s: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    saw_done: bool = False
    usage: dict[str, Any] | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.chunk_times_s) and (self.finish_reason is not None or self.saw_done)

    def record(self) -> RequestRecord:
        times = self.chunk_times_s
        usage = self.usage or {}
        output_tokens = int(usage.get("completion_tokens") or len(times))
        return RequestRecord(
            arrival_s=self.arrival_s,
            first_token_s=times[0],
            finish_s=times[-1],
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=output_tokens,
            itl_s=[b - a for a, b in zip(times, times[1:], strict=False)],
        )


def completions_url(base_url: str) -> str:
    """``http://host:port``, ``.../`` or ``.../v1`` → ``http://host:port/v1/completions``."""
    base = base_url.rstrip("/")
    base = base.removesuffix("/v1")
    return f"{base}/v1/completions"


def build_payload(
    model: str,
    prompt: str | list[int],
    max_tokens: int,
    *,
    ignore_eos: bool,
    temperature: float,
) -> dict[str, Any]:
    """The request body; ``ignore_eos`` appears only when True (strict servers reject it)."""
    payload: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        payload["ignore_eos"] = True
    return payload


def _read_event(stream: StreamRecord, data: str, now_s: float) -> bool:
    """Apply one ``data:`` payload; return False when the stream is over."""
    if data == "[DONE]":
        stream.saw_done = True
        return False
    event = json.loads(data)
    if "error" in event:
        stream.error = f"error event: {json.dumps(event['error'])[:200]}"
        return False
    if event.get("usage"):
        stream.usage = event["usage"]
    for choice in event.get("choices") or ():
        if choice.get("text"):
            stream.chunk_times_s.append(now_s)
        if choice.get("finish_reason"):
            stream.finish_reason = str(choice["finish_reason"])
    return True


async def send_one(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], timeout_s: float
) -> StreamRecord:
    stream = StreamRecord(arrival_s=time.perf_counter())
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url, json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:200].decode(errors="replace")
                    stream.error = f"HTTP {response.status_code}: {body}"
                    return stream
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, "event:" lines
                    if not _read_event(stream, line[5:].strip(), time.perf_counter()):
                        break
    except TimeoutError:
        stream.error = f"timeout after {timeout_s:g} s"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        stream.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return stream


async def run_load(
    base_url: str,
    model: str,
    *,
    concurrency: int,
    num_requests: int,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 128,
    ignore_eos: bool = False,
    timeout_s: float = 300.0,
    temperature: float = 0.0,
) -> dict[str, Any]:
    """Send ``num_requests`` streaming completions, at most ``concurrency`` at a time.

    Returns ``compute_metrics``' keys (``output_throughput`` tokens/s over the run's wall time,
    ``median_ttft_ms``, ``p99_tpot_ms``, ``p99_itl_ms``, ``p99_e2el_ms``, ...) plus
    ``concurrency``, ``num_requests``, ``num_errors``, ``num_incomplete``, ``error_samples``
    (a few messages), ``finish_reasons`` (counts), ``mean_output_tokens``,
    ``min_output_tokens``, ``max_output_tokens``, ``num_with_usage`` (requests whose token
    count came from the usage rather than from counting chunks) and ``client_cpu_s`` (CPU time
    this process spent generating the load). ``timeout_s`` bounds each
    request from send to last byte.
    """
    if concurrency < 1 or num_requests < 1:
        raise ValueError("concurrency and num_requests must be >= 1")
    from tandem.bench.openloop import RequestSpec, run_requests

    # Closed loop: everyone "arrives" at once and waits for one of ``concurrency`` slots.
    specs = [RequestSpec(0.0, prompt, max_tokens) for _ in range(num_requests)]
    start_cpu_s = time.process_time()
    result = await run_requests(
        base_url,
        model,
        specs,
        max_concurrency=concurrency,
        ignore_eos=ignore_eos,
        temperature=temperature,
        timeout_s=timeout_s,
    )
    streams = [r for r in result.records if r is not None]
    out = summarize(streams, concurrency, result.duration_s)
    # On a small shared box the client competes with the server for CPU: say how much it took.
    out["client_cpu_s"] = time.process_time() - start_cpu_s
    return out


def summarize(streams: list[StreamRecord], concurrency: int, duration_s: float) -> dict[str, Any]:
    errors = [s for s in streams if s.error is not None]
    incomplete = [s for s in streams if s.error is None and not s.complete]
    good = [s for s in streams if s.error is None and s.complete]
    records = [s.record() for s in good]
    out = compute_metrics(records, duration_s=duration_s, num_failed=len(streams) - len(good))
    lengths = [r.output_tokens for r in records]
    samples = [s.error or "" for s in errors[:_MAX_ERROR_SAMPLES]]
    samples += [
        f"incomplete: {len(s.chunk_times_s)} chunks, finish_reason={s.finish_reason}"
        for s in incomplete[: _MAX_ERROR_SAMPLES - len(samples)]
    ]
    out.update(
        concurrency=concurrency,
        num_requests=len(streams),
        num_errors=len(errors),
        num_incomplete=len(incomplete),
        error_samples=samples,
        finish_reasons=dict(Counter(s.finish_reason or "none" for s in good)),
        mean_output_tokens=sum(lengths) / len(lengths) if lengths else 0.0,
        min_output_tokens=min(lengths, default=0),
        max_output_tokens=max(lengths, default=0),
        num_with_usage=sum(1 for s in good if s.usage and s.usage.get("completion_tokens")),
    )
    return out


def format_line(label: str, m: dict[str, Any]) -> str:
    """One human-readable line of a ``run_load`` result."""
    return (
        f"{label}c={m['concurrency']:<4d} requests={m['num_requests']:<5d} "
        f"out_tok/s={m['output_throughput']:8.1f}  "
        f"TTFT p50/p99={m['median_ttft_ms']:7.1f}/{m['p99_ttft_ms']:7.1f} ms  "
        f"TPOT p50/p99={m['median_tpot_ms']:6.2f}/{m['p99_tpot_ms']:6.2f} ms  "
        f"mean_out={m['mean_output_tokens']:6.1f} "
        f"errors={m['num_errors']} incomplete={m['num_incomplete']} "
        f"client_cpu={100 * m.get('client_cpu_s', 0.0) / max(m['duration'], 1e-9):.0f}%"
    )
