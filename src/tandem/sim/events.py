"""The event queue: a heap ordered by ``(time, priority, sequence number)``.

The sequence number is owned by the queue (one per run), so events at the same time and
priority run in the order they were scheduled, and two runs give identical results.
"""

from __future__ import annotations

import heapq
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Order of same-time events: step boundaries first, then transfers, prefill, arrivals."""

    DECODE_STEP_DONE = 0
    TRANSFER_DONE = 1
    MIGRATION_DONE = 2
    PREFILL_DONE = 3
    ARRIVED = 4
    TICK = 5


class EventQueue:
    """Min-heap of ``(time_s, priority, seq, payload)``; the priority is also the event kind."""

    __slots__ = ("heap", "_seq")

    def __init__(self) -> None:
        #: The heap itself; the simulator's hot loop pops it directly.
        self.heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0

    def push(self, time_s: float, kind: Priority, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (time_s, kind, self._seq, payload))

    def pop(self) -> tuple[float, Priority, Any]:
        time_s, kind, _, payload = heapq.heappop(self.heap)
        return time_s, Priority(kind), payload

    def peek_time(self) -> float:
        return self.heap[0][0] if self.heap else float("inf")

    def peek_key(self) -> tuple[float, int]:
        return (self.heap[0][0], self.heap[0][1]) if self.heap else (float("inf"), 99)

    def __len__(self) -> int:
        return len(self.heap)


class Clock:
    """The run's current time, shared read-only with instances so views can be 'as of now'."""

    __slots__ = ("now_s",)

    def __init__(self) -> None:
        self.now_s = 0.0
