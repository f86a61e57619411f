"""Open-loop load: requests sent at their arrival times, optionally capped in flight.

1. ``plan_requests`` turns a ``Workload`` (a trace, or synthetic lengths and arrivals) into
   ``RequestSpec``s: arrival offsets, a prompt of the wanted token length, ``max_tokens``.
   Lengths are clipped into the served model's context (and the clipping is counted).
2. ``run_requests`` sends each one at its offset from the start (``request_rate`` infinite:
   all at once); with ``max_concurrency`` a request waits for a free slot first, as
   ``vllm bench serve --max-concurrency`` does (infinite rate plus a cap is a closed loop).
3. Every stream is read by ``load.send_one``; TTFT counts from when the request was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from tandem.bench.load import StreamRecord, build_payload, completions_url, send_one
from tandem.errors import ConfigError
from tandem.workload.request import Workload


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send: when (seconds after the start), what, and how long an answer."""

    arrival_s: float
    prompt: str | list[int]
    max_tokens: int


@dataclass(frozen=True)
class PlannedRequests:
    specs: tuple[RequestSpec, ...]
    #: Requests whose prompt or output length was cut to fit the context.
    num_clipped: int


@dataclass(frozen=True)
class RunResult:
    """Each spec's record (``None`` if never sent: ``duration_s`` passed first), the start on
    ``time.perf_counter``'s clock (the records' clock) and the wall time of the run."""

    records: list[StreamRecord | None]
    start_s: float
    duration_s: float


def plan_requests(
    workload: Workload,
    *,
    context_tokens: int,
    base_token_ids: Sequence[int] | None,
    rate_scale: float = 1.0,
) -> PlannedRequests:
    """Specs for ``workload``: arrivals divided by ``rate_scale`` (2 = twice as fast), prompts
    of each request's length cut from ``base_token_ids`` (token-id prompts), or made of words
    when the server cannot tokenize (then the real prompt length comes from its usage)."""
    if not rate_scale > 0:
        raise ConfigError(f"rate scale must be > 0, got {rate_scale}")
    if context_tokens < 2:
        raise ConfigError(f"the model's context ({context_tokens} tokens) leaves no room")
    specs: list[RequestSpec] = []
    clipped = 0
    first = workload.requests[0].arrival_s if workload.requests else 0.0
    for request in workload.requests:
        prompt_len = min(request.prompt_tokens, context_tokens - 1)
        output_len = min(request.output_tokens, context_tokens - prompt_len)
        if (prompt_len, output_len) != (request.prompt_tokens, request.output_tokens):
            clipped += 1
        prompt: str | list[int]
        if base_token_ids:
            prompt = _cycle(base_token_ids, prompt_len)
        else:
            prompt = " ".join(["hello"] * prompt_len)
        arrival = (request.arrival_s - first) / rate_scale
        specs.append(RequestSpec(arrival, prompt, max(1, output_len)))
    return PlannedRequests(tuple(specs), clipped)


def _cycle(ids: Sequence[int], length: int) -> list[int]:
    out: list[int] = []
    while len(out) < length:
        out.extend(ids[: length - len(out)])
    return out


async def run_requests(
    base_url: str,
    model: str,
    specs: Sequence[RequestSpec],
    *,
    max_concurrency: int | None = None,
    ignore_eos: bool = True,
    temperature: float = 0.0,
    timeout_s: float = 300.0,
    duration_s: float | None = None,
    headers: dict[str, str] | None = None,
    on_done: Callable[[StreamRecord], None] | None = None,
) -> RunResult:
    """Send ``specs`` at their arrival offsets; see ``RunResult``."""
    if max_concurrency is not None and max_concurrency < 1:
        raise ConfigError(f"max concurrency must be >= 1, got {max_concurrency}")
    url = completions_url(base_url)
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    records: list[StreamRecord | None] = [None] * len(specs)
    width = max_concurrency or max(1, len(specs))
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0))
    start = time.perf_counter()

    async def one(index: int, spec: RequestSpec, client: httpx.AsyncClient) -> None:
        delay = spec.arrival_s - (time.perf_counter() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        if duration_s is not None and time.perf_counter() - start > duration_s:
            return
        payload = build_payload(
            model, spec.prompt, spec.max_tokens, ignore_eos=ignore_eos, temperature=temperature
        )
        if slots is None:
            record = await send_one(client, url, payload, timeout_s)
        else:
            async with slots:
                record = await send_one(client, url, payload, timeout_s)
        records[index] = record
        if on_done is not None:
            on_done(record)

    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as client:
        await asyncio.gather(*(one(i, s, client) for i, s in enumerate(specs)))
    return RunResult(records, start, time.perf_counter() - start)
