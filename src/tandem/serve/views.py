"""``PrefillInstanceView`` / ``DecodeInstanceView`` of real workers, built from their stats.

A worker's stats are as of its last step; tasks the Controller sent since (not yet counted by
the worker) are added as pending, so that a burst of placements between two polls does not
pile onto one worker. Times are measured: ``step_time_s`` is the worker's recent step time,
``kv_copy_time_s`` the measured hand-off rate into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tandem.control.views import RunningRequestView, WaitingRequestView
from tandem.serve.messages import WorkerStats


@dataclass(frozen=True, slots=True)
class ServedPrefillView:
    """A prefill worker; implements ``control.views.PrefillInstanceView``."""

    stats: WorkerStats
    unseen_requests: int
    unseen_tokens: int

    @property
    def instance_id(self) -> int:
        return self.stats.worker_id

    @property
    def queued_tokens(self) -> int:
        return self.stats.queued_tokens + self.unseen_tokens

    @property
    def num_queued(self) -> int:
        return self.stats.num_waiting + self.unseen_requests


@dataclass(frozen=True, slots=True)
class ServedDecodeView:
    """A decode worker; implements ``control.views.DecodeInstanceView``."""

    stats: WorkerStats
    unseen_requests: int
    unseen_tokens: int
    kv_bytes_per_token: int
    #: The Controller's request numbers (``NewRequestView.request_id``) by request id.
    number_by_id: Mapping[str, int]

    @property
    def instance_id(self) -> int:
        return self.stats.worker_id

    @property
    def kv_capacity_tokens(self) -> int:
        return self.stats.kv_capacity_tokens

    @property
    def max_batch_size(self) -> int:
        return self.stats.max_batch_size

    @property
    def kv_used_tokens(self) -> int:
        return self.stats.kv_used_tokens

    @property
    def kv_pending_tokens(self) -> int:
        return self.stats.kv_waiting_tokens + self.stats.kv_reserved_tokens + self.unseen_tokens

    @property
    def kv_waiting_tokens(self) -> int:
        numbers = self.number_by_id
        return sum(kv for r, kv, _, _ in self.stats.waiting if r in numbers)

    @property
    def num_running(self) -> int:
        return self.stats.num_running

    @property
    def num_pending(self) -> int:
        return self.stats.num_waiting + self.stats.num_migrating_in + self.unseen_requests

    @property
    def num_preemptions(self) -> int:
        return self.stats.num_preemptions

    def running(self) -> Sequence[RunningRequestView]:
        numbers = self.number_by_id
        return [
            RunningRequestView(numbers[r], prompt, generated, prompt + generated, predicted)
            for r, prompt, generated, predicted in self.stats.running
            if r in numbers
        ]

    def waiting(self) -> Sequence[WaitingRequestView]:
        numbers = self.number_by_id
        return [
            WaitingRequestView(numbers[r], kv, generated, predicted)
            for r, kv, generated, predicted in self.stats.waiting
            if r in numbers
        ]

    def projected_kv_tokens(self, horizon_tokens: int) -> float | None:
        """``kv_used + sum(min(predicted_remaining, horizon))``; a request without a prediction
        counts the whole horizon (the safe side). ``None`` without a prediction source."""
        if not self.stats.predicting:
            return None
        growth = sum(
            min(horizon_tokens, predicted if predicted is not None else horizon_tokens)
            for _, _, _, predicted in self.stats.running
        )
        return float(self.stats.kv_used_tokens + growth)

    def step_time_s(self) -> float:
        return self.stats.step_time_s if self.stats.num_running else 0.0

    def kv_copy_time_s(self, kv_tokens: int) -> float:
        rate = self.stats.kv_transfer_bytes_per_s
        return kv_tokens * self.kv_bytes_per_token / rate if rate > 0 else 0.0
