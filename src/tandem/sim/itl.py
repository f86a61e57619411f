"""Inter-token latency (ITL) of a simulated run, as vLLM's benchmark pools it: every gap
between two consecutive output tokens of a request, over all requests.

A decode step of a batch of ``B`` gives each of its ``B`` requests one token, so it adds
``B`` gaps equal to the step's duration, except for a request's first step after it joined
the batch (from prefill, a preemption or a migration): its gap also holds the wait since its
previous token (``stall``: waiting for the step boundary, for memory, recompute, a migration
pause). The recorder stores per closed segment of fixed batch ``(k steps, B, u, v, extra)``
(step ``i`` lasts ``u + v*i``, the first also ``extra``) and per joiner ``(first step, stall)``,
and builds a weighted sample at the end: exact (the gaps of a request sum to its E2E minus
TTFT), without holding one number per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ItlRecorder:
    """Collects one decode instance's segments and join stalls."""

    __slots__ = ("segments", "stalls")

    def __init__(self) -> None:
        self.segments: list[tuple[int, int, float, float, float]] = []
        #: (duration of the joiner's first step, its stall)
        self.stalls: list[tuple[float, float]] = []


@dataclass(frozen=True)
class ItlSample:
    """Distinct gap values (seconds) and how many gaps have each."""

    values_s: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_recorders(cls, recorders: list[ItlRecorder]) -> ItlSample:
        segs = [s for r in recorders for s in r.segments]
        stalls = [s for r in recorders for s in r.stalls]
        if not segs:
            return cls(np.zeros(0), np.zeros(0))
        k, batch, u, v, extra = (np.asarray(c) for c in zip(*segs, strict=True))
        k = k.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(k)[:-1]])
        step = np.arange(int(k.sum())) - np.repeat(starts, k)  # step index inside its segment
        values = np.repeat(u, k) + np.repeat(v, k) * step
        values[starts] += extra
        weights = np.repeat(batch, k).astype(float)
        if stalls:
            first, stall = (np.asarray(c) for c in zip(*stalls, strict=True))
            # each joiner's first gap is its step plus its stall, instead of the step alone
            values = np.concatenate([values, first, first + stall])
            weights = np.concatenate([weights, -np.ones(first.size), np.ones(first.size)])
        unique, inverse = np.unique(values, return_inverse=True)
        counts = np.bincount(inverse, weights=weights)
        keep = counts > 0.5
        return cls(unique[keep], np.rint(counts[keep]))

    @property
    def total_s(self) -> float:
        return float((self.values_s * self.counts).sum())

    def describe(self, percentiles: tuple[float, ...]) -> dict[str, float]:
        """vLLM's ITL keys (ms): mean, median, std, and numpy-linear percentiles, as if every
        gap were listed."""
        n = float(self.counts.sum())
        ms = self.values_s * 1000.0
        out: dict[str, float] = {}
        if n == 0:
            out.update(mean_itl_ms=0.0, median_itl_ms=0.0, std_itl_ms=0.0)
            out.update({f"p{p:g}_itl_ms".replace(".", "_"): 0.0 for p in percentiles})
            return out
        mean = float((ms * self.counts).sum() / n)
        cum = np.cumsum(self.counts)

        def at(rank: float) -> float:  # the value at 0-based position ``rank`` of the sorted gaps
            lo = int(np.floor(rank))
            a = ms[np.searchsorted(cum, lo, side="right")]
            b = ms[np.searchsorted(cum, min(lo + 1, n - 1), side="right")]
            return float(a + (b - a) * (rank - lo))

        out["mean_itl_ms"] = mean
        out["median_itl_ms"] = at(0.5 * (n - 1))
        out["std_itl_ms"] = float(np.sqrt(((ms - mean) ** 2 * self.counts).sum() / n))
        for p in percentiles:
            out[f"p{p:g}_itl_ms".replace(".", "_")] = at(p / 100.0 * (n - 1))
        return out
