"""What policies may see. The data plane implements these protocols; policies only read.

Decode-instance numbers are as of the instance's last batch change (a step boundary where a
request joined, finished, was preempted or migrated): between such boundaries a batch grows by
one token per request per step, which the rescheduler can project from ``running()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NewRequestView:
    """A request about to be dispatched to prefill or placed on a decode instance."""

    request_id: int
    arrival_s: float
    prompt_tokens: int
    #: The length predictor's estimate of output tokens, if a prediction source is configured.
    predicted_output_tokens: float | None = None
    #: One hash per prompt block (Mooncake traces' ``hash_ids``), when the workload has them
    #: and the simulator caches prefixes; ``None`` otherwise.
    prefix_hashes: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class RunningRequestView:
    """A request decoding on an instance."""

    request_id: int
    prompt_tokens: int
    tokens_generated: int
    kv_tokens: int
    #: Predicted remaining output tokens (refreshed every k tokens), or None without predictor.
    predicted_remaining_tokens: float | None = None


@dataclass(frozen=True, slots=True)
class WaitingRequestView:
    """A request placed on a decode instance that waits for memory there (its KV is still on
    the prefill instance, or was dropped by a preemption and will be recomputed)."""

    request_id: int
    #: KV tokens it needs to join: prompt plus tokens generated so far.
    kv_tokens: int
    tokens_generated: int
    #: Predicted remaining output tokens, or None without predictor.
    predicted_remaining_tokens: float | None = None


class PrefillInstanceView(Protocol):
    """A prefill instance: its FCFS queue and the batch in progress."""

    @property
    def instance_id(self) -> int: ...

    @property
    def queued_tokens(self) -> int:
        """Prompt tokens waiting in the queue plus those being prefilled now."""
        ...

    @property
    def num_queued(self) -> int:
        """Requests waiting plus those being prefilled now."""
        ...


class DecodeInstanceView(Protocol):
    """A decode instance: running batch, KV use and requests waiting to join."""

    @property
    def instance_id(self) -> int: ...

    @property
    def kv_capacity_tokens(self) -> int: ...

    @property
    def max_batch_size(self) -> int: ...

    @property
    def kv_used_tokens(self) -> int:
        """KV tokens held by the running batch (as of the last batch change)."""
        ...

    @property
    def kv_pending_tokens(self) -> int:
        """KV tokens reserved or needed by requests placed here that have not joined yet."""
        ...

    @property
    def kv_waiting_tokens(self) -> int:
        """KV tokens the requests in ``waiting()`` need to join (part of
        ``kv_pending_tokens``)."""
        ...

    @property
    def num_running(self) -> int: ...

    @property
    def num_pending(self) -> int:
        """Requests placed here that wait for memory, are in transfer or are migrating in."""
        ...

    @property
    def num_preemptions(self) -> int:
        """Out-of-memory preemptions on this instance since the run began."""
        ...

    def running(self) -> Sequence[RunningRequestView]:
        """The running requests, built on demand (costly: for periodic policies only)."""
        ...

    def waiting(self) -> Sequence[WaitingRequestView]:
        """Requests waiting here for memory, first in line first (not those in transfer). A
        rescheduler may move one to another instance: nothing is copied, it queues there. The
        queue can be long under overload: a data plane may build the views as they are read."""
        ...

    def projected_kv_tokens(self, horizon_tokens: int) -> float | None:
        """KV the running batch will hold ``horizon_tokens`` steps from now if every request
        grows until its *predicted* end (capped at the horizon) and none frees memory:
        ``kv_used + sum(min(predicted_remaining, horizon))``. ``None`` without predictions."""
        ...

    def step_time_s(self) -> float:
        """Duration of the current decode step (0 when idle)."""
        ...

    def kv_copy_time_s(self, kv_tokens: int) -> float:
        """Time to copy ``kv_tokens`` of KV cache to another decode instance."""
        ...
