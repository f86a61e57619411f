"""Prefill instances: an FCFS queue, prefilled in batches up to a token budget.

A batch takes requests in arrival order while their prompts fit the budget; a prompt longer
than the budget is prefilled alone. Prefill produces a request's first output token. A batch
takes the cost model's time, times a random factor when service-time variability is on
(``tandem.sim.variability``).
"""

from __future__ import annotations

from collections import deque

from tandem.perf.base import CostModel
from tandem.sim.request import SimRequest
from tandem.sim.variability import ServiceTimeNoise


class PrefillInstance:
    """One prefill instance; implements ``tandem.control.views.PrefillInstanceView``."""

    __slots__ = (
        "instance_id",
        "cost",
        "token_budget",
        "queue",
        "busy",
        "queued_tokens",
        "num_queued",
        "busy_s",
        "noise",
        "max_batch_tokens",
    )

    def __init__(
        self,
        instance_id: int,
        cost: CostModel,
        token_budget: int,
        noise: ServiceTimeNoise | None = None,
    ) -> None:
        """``noise``, when given, scales every batch's time (shared by a run's instances)."""
        self.instance_id = instance_id
        self.cost = cost
        self.token_budget = token_budget
        self.noise = noise
        self.queue: deque[SimRequest] = deque()
        self.busy = False
        self.queued_tokens = 0
        self.num_queued = 0
        self.busy_s = 0.0
        #: The largest batch run, in prompt tokens (for the cost model's measured range).
        self.max_batch_tokens = 0

    def enqueue(self, request: SimRequest) -> None:
        self.queue.append(request)
        self.queued_tokens += request.prompt_tokens
        self.num_queued += 1

    def next_batch(self) -> tuple[list[SimRequest], float]:
        """Take the next batch off the queue and return it with its prefill time."""
        batch = [self.queue.popleft()]
        total = batch[0].prompt_tokens
        while self.queue and total + self.queue[0].prompt_tokens <= self.token_budget:
            request = self.queue.popleft()
            total += request.prompt_tokens
            batch.append(request)
        self.busy = True
        if total > self.max_batch_tokens:
            self.max_batch_tokens = total
        duration = self.cost.prefill_time_s([r.prompt_tokens for r in batch])
        if self.noise is not None:
            duration *= self.noise.multiplier()
        self.busy_s += duration
        return batch, duration

    def finish_batch(self, batch: list[SimRequest]) -> None:
        self.busy = False
        self.queued_tokens -= sum(r.prompt_tokens for r in batch)
        self.num_queued -= len(batch)
