"""The simulator: a workload flowing through prefill instances, KV links and decode instances,
with the control-plane policies making every decision.

Life of a request (P/D disaggregated), as simulated:

1. Arrives (from the trace); rejected at once, with a reason, if its prompt plus output can
   never fit one decode instance's KV cache. Otherwise the dispatch policy picks a prefill
   instance and it joins that instance's FCFS queue.
2. Prefill runs in batches up to a token budget, or, with chunked prefill on
   (``chunk_tokens``), in iterations of at most that many prompt tokens, long prompts split
   over several; it produces the first output token when a prompt's last token is computed.
   With prefix caching on (``prefix_cache_tokens``) a prompt's leading blocks held by its
   instance are not computed.
3. The placement policy picks a decode instance; the request waits there for memory, which is
   reserved before its KV is copied over the instance's inbound link (transfers on one link
   queue behind each other).
4. TTFT ends when the KV has arrived: the first token reaches the client then. TTFT therefore
   counts prefill queueing, prefill, waiting for decode memory and the KV transfer, and not the
   first decode step (which produces token 2). A one-token request ends at its prefill. The
   profile's ``request_overhead_s`` (latency outside the instances) is added by ``SimResult``
   to every client-visible time, so TTFT and E2E include it and TPOT does not change.
5. It decodes in the continuous batch (see ``decode``), possibly preempted and recomputed.
6. It finishes after its last token; metrics are computed from the per-request timestamps.

Events at the same time run in the order (time, priority, sequence number); arrivals are
merged from the sorted workload instead of sitting in the heap.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tandem.control.admission import (
    ADMISSION_ORDERS,
    DEFAULT_ADMISSION_MAX_WAIT_S,
    DEFAULT_AGING_TOKENS_PER_S,
)
from tandem.control.ares import AresPlacement
from tandem.control.policies import (
    DecodePlacementPolicy,
    DecodeRescheduler,
    make_dispatch,
    make_placement,
    make_rescheduler,
)
from tandem.control.views import NewRequestView
from tandem.errors import ConfigError
from tandem.perf.base import CostModel
from tandem.sim import decode as decode_module
from tandem.sim.decode import DecodeInstance
from tandem.sim.events import Clock, EventQueue, Priority
from tandem.sim.migration import MigrationManager, MigrationStats
from tandem.sim.placement_rows import PlacementRows
from tandem.sim.prediction import PredictionSource, check_prediction_spec
from tandem.sim.prefill import PrefillInstance
from tandem.sim.prefix_cache import DEFAULT_BLOCK_TOKENS, PrefixCache, live_prefix_blocks
from tandem.sim.request import SimRequest
from tandem.sim.result import SimResult
from tandem.sim.variability import ServiceTimeNoise, check_cv
from tandem.workload.request import Workload

ADMISSIONS = ("greedy", "predictive")


@dataclass(frozen=True)
class ClusterConfig:
    """A P/D cluster: instance counts, their cost models, batching limits and policies."""

    num_prefill: int
    num_decode: int
    prefill_cost: CostModel
    decode_cost: CostModel
    max_batch_size: int = 256
    prefill_token_budget: int = 8192
    dispatch: str = "least-queued-tokens"
    placement: str = "round-robin"
    rescheduler: str = "none"
    exact: bool = False
    record_timeline: bool = False
    #: Prediction source for remaining lengths (see ``tandem.sim.prediction``).
    prediction: str = "none"
    prediction_refresh_tokens: int = 20
    #: Seeds the run's RNGs (prediction noise, prefill service-time variability).
    seed: int = 0
    #: Decode admission: ``greedy`` (join when the KV fits now) or ``predictive`` (also when
    #: the predicted peak fits; needs a prediction source).
    admission: str = "greedy"
    #: Predictive admission holds a request back for at most this long after it started
    #: waiting on an instance (placed or preempted there); past it, greedy admission decides.
    #: ``inf``: no bound (before issue 19; slower than greedy on long outputs).
    admission_max_wait_s: float = DEFAULT_ADMISSION_MAX_WAIT_S
    #: Order of each decode instance's waiting queue (``control.admission.admission_priority``):
    #: ``fcfs`` or ``shortest-predicted`` (needs a prediction source), aged at
    #: ``admission_aging_tokens_per_s``.
    admission_order: str = "fcfs"
    admission_aging_tokens_per_s: float = DEFAULT_AGING_TOKENS_PER_S
    #: Coefficient of variation of prefill iteration times around the cost model (gamma
    #: distributed, mean preserved; see ``tandem.sim.variability``). 0: deterministic.
    prefill_cv: float = 0.0
    #: Record every inter-token gap (``tandem.sim.itl``) for the ITL metrics; off by default
    #: (the goodput search and the experiments do not read ITL).
    record_itl: bool = False
    #: Chunked prefill (vLLM's ``max_num_batched_tokens``, SGLang's ``chunked_prefill_size``):
    #: at most this many prompt tokens per prefill iteration, long prompts split into chunks
    #: (see ``tandem.sim.prefill``); replaces ``prefill_token_budget``. ``None``: off.
    chunk_tokens: int | None = None
    #: Prefix caching: each prefill instance keeps the KV blocks of prompts it prefilled, up
    #: to this many tokens (LRU over blocks), and a request carrying block hashes (Mooncake's
    #: ``hash_ids``) skips its cached prefix (``tandem.sim.prefix_cache``). ``None``: off.
    prefix_cache_tokens: int | None = None
    #: Prompt tokens per block hash (512 in Mooncake traces).
    prefix_block_tokens: int = DEFAULT_BLOCK_TOKENS

    @property
    def request_overhead_s(self) -> float:
        """Latency outside the instances that every request's TTFT includes: the prefill
        profile's ``request_overhead_s`` (0 unless the profile measured it)."""
        return self.prefill_cost.request_overhead_s()

    def __post_init__(self) -> None:
        if self.num_prefill < 1 or self.num_decode < 1:
            raise ConfigError(
                f"a cluster needs at least one prefill and one decode instance, got "
                f"{self.num_prefill}P{self.num_decode}D"
            )
        if self.max_batch_size < 1:
            raise ConfigError(f"max batch size must be >= 1, got {self.max_batch_size}")
        if self.prefill_token_budget < 1:
            raise ConfigError(f"prefill token budget must be >= 1, got {self.prefill_token_budget}")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise ConfigError(f"chunk tokens must be >= 1, got {self.chunk_tokens}")
        if self.prefix_cache_tokens is not None and self.prefix_cache_tokens < 0:
            raise ConfigError(f"prefix cache tokens must be >= 0, got {self.prefix_cache_tokens}")
        if self.prefix_block_tokens < 1:
            raise ConfigError(f"prefix block tokens must be >= 1, got {self.prefix_block_tokens}")
        if self.prediction_refresh_tokens < 1:
            raise ConfigError("prediction refresh must be >= 1 token")
        check_prediction_spec(self.prediction)
        check_cv(self.prefill_cv)
        if self.admission not in ADMISSIONS:
            raise ConfigError(
                f"unknown admission '{self.admission}'; known: {', '.join(ADMISSIONS)}"
            )
        if not self.admission_max_wait_s >= 0:
            raise ConfigError(f"admission max wait must be >= 0 s, got {self.admission_max_wait_s}")
        if self.admission_order not in ADMISSION_ORDERS:
            raise ConfigError(
                f"unknown admission order '{self.admission_order}'; known: "
                f"{', '.join(ADMISSION_ORDERS)}"
            )
        if not (
            math.isfinite(self.admission_aging_tokens_per_s)
            and self.admission_aging_tokens_per_s > 0
        ):
            raise ConfigError(
                "admission aging must be a finite number of tokens/s > 0, got "
                f"{self.admission_aging_tokens_per_s}"
            )
        if self.admission_order != "fcfs" and self.prediction == "none":
            raise ConfigError(
                f"admission order '{self.admission_order}' needs a prediction source (--prediction)"
            )
        if self.admission == "predictive" and self.prediction == "none":
            raise ConfigError("predictive admission needs a prediction source (--prediction)")
        # Unknown policy names fail here, before any work.
        make_dispatch(self.dispatch)
        make_placement(self.placement)
        make_rescheduler(self.rescheduler)


class Simulator:
    """One run of a workload on a cluster. Create a new one per run."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        placement: DecodePlacementPolicy | None = None,
        rescheduler: DecodeRescheduler | None = None,
    ) -> None:
        """``placement`` and ``rescheduler`` objects, when given, replace the named ones."""
        self.config = config
        self.queue = EventQueue()
        self.clock = Clock()
        self.dispatch = make_dispatch(config.dispatch)
        self.placement = placement or make_placement(config.placement)
        self.rescheduler = rescheduler or make_rescheduler(config.rescheduler)
        noise = ServiceTimeNoise(config.prefill_cv, config.seed) if config.prefill_cv > 0 else None
        self.prefill = [
            PrefillInstance(
                i,
                config.prefill_cost,
                config.prefill_token_budget,
                noise,
                config.chunk_tokens,
                None
                if config.prefix_cache_tokens is None
                else PrefixCache(config.prefix_cache_tokens, config.prefix_block_tokens),
            )
            for i in range(config.num_prefill)
        ]
        self.decode = [
            DecodeInstance(
                i,
                config.decode_cost,
                config.max_batch_size,
                self.queue,
                self.clock,
                self._start_transfer,
                self._finished,
                self._left,
                exact=config.exact,
                record_timeline=config.record_timeline,
                predictive_admission=config.admission == "predictive",
                admission_max_wait_s=config.admission_max_wait_s,
                admission_order=config.admission_order,
                aging_tokens_per_s=config.admission_aging_tokens_per_s,
                record_itl=config.record_itl,
            )
            for i in range(config.num_decode)
        ]
        # ``ares`` placement on arrays, re-reading only the instances that changed (the same
        # choices; ``decode.VECTORISED = False``: every instance read at every placement).
        self._placement_rows = (
            PlacementRows(self.decode, self.clock, self.placement)
            if decode_module.VECTORISED and type(self.placement) is AresPlacement
            else None
        )
        self.num_done = 0
        self.migrations: MigrationManager | None = None
        self.predictor = PredictionSource("none")

    # -- callbacks from decode instances ------------------------------------------------------

    def _start_transfer(self, request: SimRequest, instance: DecodeInstance, now_s: float) -> None:
        start = max(now_s, instance.link_free_s)
        end = start + self.config.decode_cost.kv_transfer_time_s(request.need_tokens)
        instance.link_free_s = end
        self.queue.push(end, Priority.TRANSFER_DONE, (instance, request))

    def _finished(self, request: SimRequest, now_s: float) -> None:
        request.finish_s = now_s
        self.num_done += 1
        if self.migrations is not None:
            self.migrations.on_finished(request)

    def _left(self, request: SimRequest, now_s: float) -> None:
        assert self.migrations is not None  # only migrations take requests off a batch
        self.migrations.on_left(request, now_s)

    # -- event handlers -----------------------------------------------------------------------

    def _arrived(self, request: SimRequest, now_s: float) -> bool:
        if (
            request.prompt_tokens + request.output_tokens
            > self.config.decode_cost.kv_capacity_tokens
        ):
            return False
        view = NewRequestView(
            request.request_id,
            request.arrival_s,
            request.prompt_tokens,
            prefix_hashes=request.prefix_hashes,
        )
        instance = self.prefill[self.dispatch.choose(view, self.prefill)]
        instance.enqueue(request)
        if not instance.busy:
            self._start_prefill(instance, now_s)
        return True

    def _start_prefill(self, instance: PrefillInstance, now_s: float) -> None:
        batch, duration = instance.next_batch()
        self.queue.push(now_s + duration, Priority.PREFILL_DONE, (instance, batch))

    def _prefill_done(
        self, instance: PrefillInstance, batch: list[SimRequest], now_s: float
    ) -> None:
        instance.finish_batch(batch)
        for request in batch:
            request.generated = 1
            if request.output_tokens == 1:
                request.first_token_s = now_s
                self._finished(request, now_s)
                continue
            request.need_tokens = request.prompt_tokens + 1
            predicted = self.predictor.remaining(request, 1)
            view = NewRequestView(
                request.request_id,
                request.arrival_s,
                request.prompt_tokens,
                None if predicted is None else predicted + 1,
            )
            rows = self._placement_rows
            chosen = self.placement.choose(view, self.decode) if rows is None else rows.choose(view)
            self.decode[chosen].place(request, now_s)
        if instance.queue:
            self._start_prefill(instance, now_s)

    # -- the loop -----------------------------------------------------------------------------

    def run(
        self, workload: Workload, progress: Callable[[int, int], None] | None = None
    ) -> SimResult:
        """Simulate ``workload`` to completion; ``progress(done, total)`` is called now and then."""
        requests = [
            SimRequest(
                i,
                r.request_id,
                r.arrival_s,
                r.prompt_tokens,
                r.output_tokens,
                r.prefix_hashes if self.config.prefix_cache_tokens is not None else None,
            )
            for i, r in enumerate(workload.requests)
        ]
        if self.config.prefix_cache_tokens is not None:
            # Arrivals reach the prefill queues in this order (the loop below).
            live = live_prefix_blocks([r.prefix_hashes for r in requests])
            for r, n in zip(requests, live, strict=True):
                r.prefix_live_blocks = n
        median_output = float(np.median(workload.output_tokens)) if requests else 1.0
        self.predictor = PredictionSource.from_spec(
            self.config.prediction,
            refresh_tokens=self.config.prediction_refresh_tokens,
            seed=self.config.seed,
            median_output_tokens=max(1.0, median_output),
        )
        if self.predictor.enabled:
            self.predictor.prepare(requests)
            for instance in self.decode:
                instance.predictor = self.predictor
        total = len(requests)
        rejected: list[int] = []
        queue = self.queue
        interval = self.rescheduler.interval_s
        if interval is not None and total:
            self.migrations = MigrationManager(
                queue, self.decode, self.config.decode_cost, {r.request_id: r for r in requests}
            )
            queue.push(requests[0].arrival_s + interval, Priority.TICK, None)
        # The hot loop: locals and plain ints instead of attribute and enum lookups.
        heap = queue.heap
        pop = heapq.heappop
        clock = self.clock
        arrived_priority = int(Priority.ARRIVED)
        step_done, transfer_done = int(Priority.DECODE_STEP_DONE), int(Priority.TRANSFER_DONE)
        prefill_done = int(Priority.PREFILL_DONE)
        migration_done = int(Priority.MIGRATION_DONE)
        next_arrival = 0
        events = 0
        last_progress_s = time.monotonic()
        while True:
            if next_arrival < total:
                request = requests[next_arrival]
                arrival_s = request.arrival_s
                if (
                    not heap
                    or arrival_s < heap[0][0]
                    or (arrival_s == heap[0][0] and arrived_priority < heap[0][1])
                ):
                    next_arrival += 1
                    clock.now_s = arrival_s
                    if not self._arrived(request, arrival_s):
                        rejected.append(request.index)
                        self.num_done += 1
                    continue
            elif not heap:
                break
            now_s, kind, _, payload = pop(heap)
            clock.now_s = now_s
            if kind == step_done:
                payload[0].on_wake(now_s, payload[1], payload[2])
            elif kind == transfer_done:
                instance, request = payload
                request.first_token_s = request.last_token_s = now_s
                instance.transfer_done(request, now_s)
            elif kind == prefill_done:
                self._prefill_done(payload[0], payload[1], now_s)
            elif kind == migration_done:
                assert self.migrations is not None
                self.migrations.on_event(payload[0], payload[1], payload[2], now_s)
            else:
                self._tick(now_s, total)
            events += 1
            # Every second or so of wall time, however slow each event is (a huge cluster's
            # events are slow: every placement reads every instance).
            if progress is not None and events % 256 == 0:
                wall_s = time.monotonic()
                if wall_s - last_progress_s >= 1.0:
                    last_progress_s = wall_s
                    progress(self.num_done, total)
        if progress is not None:
            progress(self.num_done, total)
        if self.migrations is not None:
            self.migrations.finalize_pauses(requests)
        return SimResult.from_run(
            workload.name,
            requests,
            rejected,
            self.prefill,
            self.decode,
            self.config,
            self.migrations.stats if self.migrations is not None else MigrationStats(),
        )

    def _tick(self, now_s: float, total: int) -> None:
        assert self.migrations is not None
        for migration in self.rescheduler.plan(now_s, self.decode):
            self.migrations.start(migration, now_s)
        interval = self.rescheduler.interval_s
        if interval is not None and self.num_done < total:
            self.queue.push(now_s + interval, Priority.TICK, None)


def simulate(
    workload: Workload,
    config: ClusterConfig,
    progress: Callable[[int, int], None] | None = None,
    *,
    placement: DecodePlacementPolicy | None = None,
    rescheduler: DecodeRescheduler | None = None,
) -> SimResult:
    """Run ``workload`` on a fresh simulator built from ``config`` (policy objects override the
    config's names)."""
    return Simulator(config, placement=placement, rescheduler=rescheduler).run(workload, progress)
