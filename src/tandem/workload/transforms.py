"""Deterministic transforms of a workload: rate scaling, time window, length capping and scaling,
request-count limit, repetition (to build long streams from a short trace), span (a window
that repeats the trace when it is too short) and rotation (the same trace from another start).

Each returns a new ``Workload``; request ids are renumbered 0..n-1 in arrival order, and the
transform is recorded in ``notes`` so a result says how it was made.
"""

from __future__ import annotations

import dataclasses
import math

from tandem.errors import ConfigError
from tandem.workload.request import Request, Workload


def _renumber(w: Workload, requests: list[Request], note: str) -> Workload:
    out = tuple(dataclasses.replace(r, request_id=i) for i, r in enumerate(requests))
    return Workload(w.name, out, (*w.notes, note))


def _mean_gap(w: Workload) -> float:
    """The mean time between arrivals: what ``repeat`` and ``rotate`` leave between the last
    request of one pass and the first of the next."""
    return w.duration_s / max(1, len(w) - 1)


def scale_rate(w: Workload, factor: float) -> Workload:
    """Multiply the arrival rate by ``factor`` (divide every arrival time by it)."""
    if not (math.isfinite(factor) and factor > 0):
        raise ConfigError(f"rate scale must be a finite number > 0, got {factor}")
    requests = [dataclasses.replace(r, arrival_s=r.arrival_s / factor) for r in w.requests]
    return Workload(w.name, tuple(requests), (*w.notes, f"rate x{factor:g}"))


def time_window(w: Workload, start_s: float, end_s: float | None = None) -> Workload:
    """Keep requests arriving in ``[start_s, end_s)``, shifted so the window starts at 0 s."""
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise ConfigError(f"bad time window [{start_s}, {end_s})")
    kept = [
        dataclasses.replace(r, arrival_s=r.arrival_s - start_s)
        for r in w.requests
        if r.arrival_s >= start_s and (end_s is None or r.arrival_s < end_s)
    ]
    return _renumber(w, kept, f"window [{start_s:g}, {end_s if end_s is not None else 'end'}) s")


def cap_lengths(
    w: Workload, max_prompt_tokens: int | None = None, max_output_tokens: int | None = None
) -> Workload:
    """Clip prompt and output lengths to the given maxima."""
    for label, value in (
        ("max_prompt_tokens", max_prompt_tokens),
        ("max_output_tokens", max_output_tokens),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{label} must be >= 1, got {value}")
    requests = [
        dataclasses.replace(
            r,
            prompt_tokens=min(r.prompt_tokens, max_prompt_tokens or r.prompt_tokens),
            output_tokens=min(r.output_tokens, max_output_tokens or r.output_tokens),
        )
        for r in w.requests
    ]
    return Workload(
        w.name,
        tuple(requests),
        (*w.notes, f"cap prompt {max_prompt_tokens} output {max_output_tokens}"),
    )


def scale_lengths(w: Workload, prompt_factor: float = 1.0, output_factor: float = 1.0) -> Workload:
    """Multiply lengths by factors, rounding to the nearest integer, at least 1."""
    if prompt_factor <= 0 or output_factor <= 0:
        raise ConfigError("length scale factors must be > 0")
    requests = [
        dataclasses.replace(
            r,
            prompt_tokens=max(1, round(r.prompt_tokens * prompt_factor)),
            output_tokens=max(1, round(r.output_tokens * output_factor)),
        )
        for r in w.requests
    ]
    return Workload(
        w.name, tuple(requests), (*w.notes, f"lengths x{prompt_factor:g} / x{output_factor:g}")
    )


def limit(w: Workload, num_requests: int) -> Workload:
    """Keep the first ``num_requests`` requests."""
    if num_requests < 1:
        raise ConfigError(f"request limit must be >= 1, got {num_requests}")
    if num_requests >= len(w):
        return w
    return Workload(w.name, w.requests[:num_requests], (*w.notes, f"first {num_requests} requests"))


def repeat(w: Workload, times: int) -> Workload:
    """Concatenate ``times`` copies back to back; each copy starts one mean gap after the last."""
    if times < 1:
        raise ConfigError(f"repeat count must be >= 1, got {times}")
    if times == 1 or not w.requests:
        return w
    span = w.duration_s + _mean_gap(w)
    requests = [
        dataclasses.replace(r, arrival_s=r.arrival_s + k * span)
        for k in range(times)
        for r in w.requests
    ]
    return _renumber(w, requests, f"repeated x{times}")


def span(w: Workload, seconds: float) -> Workload:
    """The first ``seconds`` of ``w``, repeating it back to back when it is shorter."""
    if w.duration_s > 0 and seconds > w.duration_s:
        w = repeat(w, math.ceil(seconds / w.duration_s))
    return time_window(w, 0.0, seconds)


def rotate(w: Workload, start_s: float) -> Workload:
    """``w`` from ``start_s`` on, then its beginning: the requests before ``start_s`` follow the
    last one, one mean gap after it (as ``repeat`` joins copies). Another sample of the same
    trace for a second seed, with every request kept."""
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ConfigError(f"rotation start must be a finite number >= 0 s, got {start_s}")
    if not w.requests or start_s == 0:
        return w
    first = w.requests[0].arrival_s
    start = first + start_s % max(w.duration_s, 1e-9)
    later = [r for r in w.requests if r.arrival_s >= start]
    earlier = [r for r in w.requests if r.arrival_s < start]
    if not later or not earlier:
        return w
    shift = later[-1].arrival_s + _mean_gap(w) - first
    requests = [dataclasses.replace(r, arrival_s=r.arrival_s - start + first) for r in later]
    requests += [
        dataclasses.replace(r, arrival_s=r.arrival_s + shift - start + first) for r in earlier
    ]
    return _renumber(w, requests, f"rotated to start at {start_s:g} s")
