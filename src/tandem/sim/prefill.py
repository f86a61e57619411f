"""Prefill instances: an FCFS queue, prefilled in batches up to a token budget.

Two modes:

- Whole prompts (the default): a batch takes requests in arrival order while their prompts fit
  the budget; a prompt longer than the budget is prefilled alone.
- Chunked prefill (``chunk_tokens`` set, as vLLM's ``max_num_batched_tokens`` and SGLang's
  ``chunked_prefill_size``): every iteration computes at most ``chunk_tokens`` prompt tokens,
  taken FCFS: the rest of the request at the head of the queue (possibly part-done), then the
  next requests while tokens remain; the last one taken may get only a chunk and stays at the
  head. An iteration is priced by ``CostModel.prefill_chunks_time_s`` from each chunk's new
  tokens and the context its prompt already computed. Only the head request can be part-done.

Prefix caching (``prefix_cache`` set; ``tandem.sim.prefix_cache``): a request whose leading
blocks the instance holds skips computing them. Whole prompts: batches are still formed by full
prompt lengths against the budget; the batch is priced by ``prefill_chunks_time_s`` with each
request's cached tokens as context already computed. Chunked: a request's cached tokens count
as done when its first chunk is taken (they leave ``queued_tokens`` then). Blocks enter the
cache when the request's prefill completes.

Prefill produces a request's first output token, at the end of the iteration that computes its
last token (every request finishing in an iteration gets it then). An iteration takes the cost
model's time, times a random factor when service-time variability is on
(``tandem.sim.variability``).
"""

from __future__ import annotations

from collections import deque

from tandem.perf.base import CostModel
from tandem.sim.prefix_cache import PrefixCache
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
        "chunk_tokens",
        "head_done_tokens",
        "running_tokens",
        "num_iterations",
        "prefix_cache",
    )

    def __init__(
        self,
        instance_id: int,
        cost: CostModel,
        token_budget: int,
        noise: ServiceTimeNoise | None = None,
        chunk_tokens: int | None = None,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        """``noise``, when given, scales every batch's time (shared by a run's instances);
        ``chunk_tokens``, when given, turns chunked prefill on with that per-iteration budget
        (``token_budget`` is then unused); ``prefix_cache``, when given, is this instance's."""
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
        self.chunk_tokens = chunk_tokens
        #: Chunked mode: prompt tokens of ``queue[0]`` computed by finished iterations.
        self.head_done_tokens = 0
        #: Chunked mode: prompt tokens the running iteration computes.
        self.running_tokens = 0
        self.num_iterations = 0
        self.prefix_cache = prefix_cache

    def cached_prefix_blocks(self, prefix_hashes: tuple[int, ...] | None) -> int:
        """Leading blocks of a prompt with these block hashes that this instance holds now (0
        without a prefix cache); read by the ``cache-aware`` dispatch policy."""
        if self.prefix_cache is None:
            return 0
        return self.prefix_cache.prefix_blocks(prefix_hashes)

    def enqueue(self, request: SimRequest) -> None:
        self.queue.append(request)
        self.queued_tokens += request.prompt_tokens
        self.num_queued += 1

    def next_batch(self) -> tuple[list[SimRequest], float]:
        """Start the next iteration: return the requests whose prefill it completes (taken off
        the queue) and its time. Chunked, the list may be empty (a long prompt's middle)."""
        if self.chunk_tokens is not None:
            return self._next_chunked(self.chunk_tokens)
        batch = [self.queue.popleft()]
        total = batch[0].prompt_tokens
        while self.queue and total + self.queue[0].prompt_tokens <= self.token_budget:
            request = self.queue.popleft()
            total += request.prompt_tokens
            batch.append(request)
        self.busy = True
        if total > self.max_batch_tokens:
            self.max_batch_tokens = total
        cache = self.prefix_cache
        if cache is None:
            duration = self.cost.prefill_time_s([r.prompt_tokens for r in batch])
        else:
            chunks = []
            for r in batch:
                cached = cache.lookup(r.prefix_hashes, r.prompt_tokens)
                r.cached_tokens = cached
                chunks.append((cached, r.prompt_tokens - cached))
            for r in batch:
                cache.insert(r.prefix_hashes, r.prefix_live_blocks)
            duration = self.cost.prefill_chunks_time_s(chunks)
        if self.noise is not None:
            duration *= self.noise.multiplier()
        self.busy_s += duration
        return batch, duration

    def _next_chunked(self, budget: int) -> tuple[list[SimRequest], float]:
        queue = self.queue
        done = self.head_done_tokens
        chunks: list[tuple[int, int]] = []
        completed: list[SimRequest] = []
        tokens = 0
        cache = self.prefix_cache
        while queue and tokens < budget:
            if done == 0 and cache is not None:
                # A fresh request (a part-done head has done > 0): its cached prefix is done.
                head = queue[0]
                done = cache.lookup(head.prefix_hashes, head.prompt_tokens)
                head.cached_tokens = done
                self.queued_tokens -= done
            remaining = queue[0].prompt_tokens - done
            take = remaining if remaining <= budget - tokens else budget - tokens
            chunks.append((done, take))
            tokens += take
            if take == remaining:
                completed.append(queue.popleft())
                done = 0
            else:
                done += take
        # The part-done head's progress counts from the start: nothing else can take it.
        self.head_done_tokens = done
        if cache is not None:
            for r in completed:
                cache.insert(r.prefix_hashes, r.prefix_live_blocks)
        self.running_tokens = tokens
        self.busy = True
        self.num_iterations += 1
        if tokens > self.max_batch_tokens:
            self.max_batch_tokens = tokens
        duration = self.cost.prefill_chunks_time_s(chunks)
        if self.noise is not None:
            duration *= self.noise.multiplier()
        self.busy_s += duration
        return completed, duration

    def finish_batch(self, batch: list[SimRequest]) -> None:
        self.busy = False
        if self.chunk_tokens is not None:
            self.queued_tokens -= self.running_tokens
            self.running_tokens = 0
        else:
            self.queued_tokens -= sum(r.prompt_tokens for r in batch)
        self.num_queued -= len(batch)
