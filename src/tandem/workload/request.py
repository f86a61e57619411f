"""The unit of work: one inference request, and a named, time-ordered list of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request as a workload describes it (not as it is being served).

    ``output_tokens`` is the true number of tokens the request will generate (traces record it);
    schedulers must not read it: they see only what a live system would see.
    """

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    prompt_text: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    prefix_hashes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Workload:
    """A request stream sorted by arrival time, with where it came from.

    ``notes`` records anything a reader did to the source (rows skipped, failed requests left
    out) so that nothing is dropped silently.
    """

    name: str
    requests: tuple[Request, ...]
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        arrivals = [r.arrival_s for r in self.requests]
        if any(b < a for a, b in zip(arrivals, arrivals[1:], strict=False)):
            object.__setattr__(
                self,
                "requests",
                tuple(sorted(self.requests, key=lambda r: (r.arrival_s, r.request_id))),
            )

    def __len__(self) -> int:
        return len(self.requests)

    def __iter__(self) -> Iterator[Request]:
        return iter(self.requests)

    def __getitem__(self, index: int) -> Request:
        return self.requests[index]

    @property
    def arrivals_s(self) -> np.ndarray:
        return np.fromiter((r.arrival_s for r in self.requests), float, len(self.requests))

    @property
    def prompt_tokens(self) -> np.ndarray:
        return np.fromiter((r.prompt_tokens for r in self.requests), np.int64, len(self.requests))

    @property
    def output_tokens(self) -> np.ndarray:
        return np.fromiter((r.output_tokens for r in self.requests), np.int64, len(self.requests))

    @property
    def duration_s(self) -> float:
        if len(self.requests) < 2:
            return 0.0
        return self.requests[-1].arrival_s - self.requests[0].arrival_s

    @property
    def rate_rps(self) -> float:
        """Mean arrival rate over the span of arrivals (0 when there is no span)."""
        duration = self.duration_s
        return len(self.requests) / duration if duration > 0 else 0.0


def workload_from_arrays(
    name: str,
    arrivals_s: Sequence[float] | np.ndarray,
    prompt_tokens: Sequence[int] | np.ndarray,
    output_tokens: Sequence[int] | np.ndarray,
    notes: tuple[str, ...] = (),
) -> Workload:
    """Build a workload from three parallel arrays; request ids are 0..n-1 in arrival order."""
    order = np.argsort(np.asarray(arrivals_s, dtype=float), kind="stable")
    arr = np.asarray(arrivals_s, dtype=float)[order]
    pin = np.asarray(prompt_tokens, dtype=np.int64)[order]
    out = np.asarray(output_tokens, dtype=np.int64)[order]
    requests = tuple(
        Request(i, float(a), int(p), int(o))
        for i, (a, p, o) in enumerate(zip(arr.tolist(), pin.tolist(), out.tolist(), strict=True))
    )
    return Workload(name, requests, notes)
