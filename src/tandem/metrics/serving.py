"""Serving metrics with the definitions of vLLM's serving benchmark.

- TTFT: arrival to the first output token reaching the client.
- TPOT: (E2E latency - TTFT) / (output tokens - 1), over requests with more than one output
  token (the first token is excluded). For goodput a one-token request counts TPOT as 0, as
  vLLM does.
- ITL: gaps between consecutive output tokens (chunks), pooled over all requests.
- E2E latency (vLLM: ``e2el``): arrival to the last token.
- Statistics: mean, median, std (population, as ``np.std``) and percentiles with numpy's
  linear interpolation.
- SLO attainment: the share of *all* requests (rejected ones count as misses) meeting every
  given threshold; goodput (``request_goodput``): requests meeting every SLO per second of the
  run's duration.

JSON keys follow vLLM (``mean_ttft_ms``, ``p99_tpot_ms``, ``request_goodput``, ...) so
dashboards built for ``benchmark_serving`` read them unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem.errors import ConfigError

DEFAULT_PERCENTILES: tuple[float, ...] = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """The observed life of one finished request (times in seconds on one clock)."""

    arrival_s: float
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int
    #: Gaps between consecutive output tokens, if recorded (len = output_tokens - 1).
    itl_s: Sequence[float] | None = None

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        if self.output_tokens <= 1:
            return None
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class SLO:
    """Latency thresholds in seconds; ``None`` means not constrained."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"SLO {name.removesuffix('_s')} must be a finite time > 0, got {value}"
                )

    @property
    def is_empty(self) -> bool:
        return self.ttft_s is None and self.tpot_s is None and self.e2e_s is None

    def met_by(self, r: RequestRecord) -> bool:
        """Whether the request meets every threshold (vLLM: TPOT of a 1-token request is 0)."""
        if self.ttft_s is not None and r.ttft_s > self.ttft_s:
            return False
        if self.tpot_s is not None and (r.tpot_s or 0.0) > self.tpot_s:
            return False
        return not (self.e2e_s is not None and r.e2e_s > self.e2e_s)


#: What ``--slo`` accepts, for help texts and error messages.
SLO_HELP = (
    "SLOs as key=value items (ttft, tpot, e2e) with a unit, e.g. ttft=2s,tpot=100ms,e2e=60s; "
    "a bare number is milliseconds, so vLLM's --goodput form 'ttft:2000 tpot:50' is accepted "
    "too"
)
_SLO_EXAMPLE = "use e.g. ttft=2s,tpot=100ms or 'ttft:2000 tpot:50' (bare numbers are ms)"


def _units(value: str) -> float:
    value = value.strip().lower()
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value) * 1e-3  # bare numbers are milliseconds, as in vLLM's --goodput


def parse_slo(text: str) -> SLO:
    """``ttft=2s,tpot=100ms,e2e=30s`` into an ``SLO``. Items are separated by commas or
    spaces, keys joined to values by ``=`` or ``:``; a bare number is milliseconds, so vLLM's
    ``--goodput ttft:2000 tpot:50`` reads the same. An empty text, a key given twice, or a
    value that is not a finite positive time is refused."""
    kwargs: dict[str, float] = {}
    items = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not items:
        raise ConfigError(f"--slo is empty; {_SLO_EXAMPLE}")
    for part in items:
        match = re.fullmatch(r"(\w+)[=:](.+)", part)
        key = match.group(1).lower().replace("e2el", "e2e") if match else ""
        if match is None or key not in ("ttft", "tpot", "e2e"):
            raise ConfigError(f"bad SLO item {part!r}; {_SLO_EXAMPLE}")
        value = match.group(2)
        if f"{key}_s" in kwargs:
            raise ConfigError(f"SLO {key} given twice in {text!r}")
        try:
            seconds = _units(value)
        except ValueError:
            raise ConfigError(f"bad SLO value in {part!r}; use e.g. 2s, 100ms, 500 (ms)") from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"bad SLO value in {part!r}: must be a finite time > 0")
        kwargs[f"{key}_s"] = seconds
    return SLO(**kwargs)


def _describe(
    out: dict[str, Any], key: str, values_s: np.ndarray, percentiles: Iterable[float]
) -> None:
    ms = values_s * 1000.0
    empty = ms.size == 0
    out[f"mean_{key}_ms"] = 0.0 if empty else float(ms.mean())
    out[f"median_{key}_ms"] = 0.0 if empty else float(np.median(ms))
    out[f"std_{key}_ms"] = 0.0 if empty else float(ms.std())
    for p in percentiles:
        label = f"{p:g}".replace(".", "_")
        out[f"p{label}_{key}_ms"] = 0.0 if empty else float(np.percentile(ms, p))


def compute_metrics(
    records: Sequence[RequestRecord],
    *,
    duration_s: float | None = None,
    slo: SLO | None = None,
    num_failed: int = 0,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """vLLM-style metrics of finished requests.

    ``duration_s`` defaults to first arrival to last finish. ``num_failed`` requests (rejected,
    errored) count in the attainment denominator as misses. ITL keys appear when at least one
    record carries its inter-token gaps.
    """
    n = len(records)
    itl_parts = [np.asarray(r.itl_s, dtype=float) for r in records if r.itl_s is not None]
    return compute_metrics_arrays(
        arrival_s=np.fromiter((r.arrival_s for r in records), float, n),
        first_token_s=np.fromiter((r.first_token_s for r in records), float, n),
        finish_s=np.fromiter((r.finish_s for r in records), float, n),
        prompt_tokens=np.fromiter((r.prompt_tokens for r in records), np.int64, n),
        output_tokens=np.fromiter((r.output_tokens for r in records), np.int64, n),
        itl_s=np.concatenate(itl_parts) if itl_parts else None,
        duration_s=duration_s,
        slo=slo,
        num_failed=num_failed,
        percentiles=percentiles,
    )


def compute_metrics_arrays(
    *,
    arrival_s: np.ndarray,
    first_token_s: np.ndarray,
    finish_s: np.ndarray,
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    itl_s: np.ndarray | None = None,
    duration_s: float | None = None,
    slo: SLO | None = None,
    num_failed: int = 0,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """``compute_metrics`` on parallel arrays (one entry per finished request); the simulator
    uses this form. ``itl_s`` is the pooled inter-token gaps, if recorded."""
    pcts = tuple(percentiles)
    n = int(arrival_s.size)
    if duration_s is None:
        duration_s = float(finish_s.max() - arrival_s.min()) if n else 0.0
    total_in = int(prompt_tokens.sum())
    total_out = int(output_tokens.sum())

    def rate(x: float) -> float:
        return x / duration_s if duration_s and duration_s > 0 else 0.0

    out: dict[str, Any] = {
        "duration": duration_s,
        "completed": n,
        "failed": num_failed,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": rate(n),
        "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
    }
    ttft = first_token_s - arrival_s
    e2e = finish_s - arrival_s
    multi = output_tokens > 1
    tpot_all = np.zeros(n)
    tpot_all[multi] = (finish_s[multi] - first_token_s[multi]) / (output_tokens[multi] - 1)
    _describe(out, "ttft", ttft, pcts)
    _describe(out, "tpot", tpot_all[multi], pcts)
    if itl_s is not None:  # omitted, not zero, when inter-token gaps were not recorded
        _describe(out, "itl", itl_s, pcts)
    _describe(out, "e2el", e2e, pcts)
    if slo is not None and not slo.is_empty:
        ok = np.ones(n, dtype=bool)
        if slo.ttft_s is not None:
            ok &= ttft <= slo.ttft_s
        if slo.tpot_s is not None:
            ok &= tpot_all <= slo.tpot_s  # one-token requests count TPOT as 0, as vLLM does
        if slo.e2e_s is not None:
            ok &= e2e <= slo.e2e_s
        good = int(ok.sum())
        total = n + num_failed
        out["slo_attainment"] = good / total if total else 0.0
        out["request_goodput"] = rate(good)
    return out
