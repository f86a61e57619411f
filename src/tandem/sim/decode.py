"""Decode instances: continuous batching under a KV capacity, advanced in closed form.

Life of a request on a decode instance:

1. ``place``: the placement policy sent it here; it waits in FIFO order for memory.
2. At a step boundary, if its KV (prompt plus tokens so far) fits beside the running batch's
   next step, the memory is reserved and the KV transfer from prefill starts (a request
   preempted earlier is instead recomputed here, which lengthens the next step).
3. When the transfer is done it joins the running batch at the next step boundary.
4. Every step adds one token to every running request. When growth would exceed the
   capacity, the newest request is preempted: its KV is dropped and it waits again, first in
   line, to be recomputed (an out-of-memory event).
5. After its last token it leaves and frees its KV.

The rules of steps 2 and 4 (who may join, who is preempted) live in ``control.admission``,
shared with the real decode worker; this module keeps the bookkeeping and asks them. Admission
is greedy by default, like vLLM: a request joins whenever its KV fits now, so a full batch keeps
growing into an out-of-memory preemption. With ``predictive_admission`` (ARES's predictions in
the data plane) it also needs the *predicted* KV peak of the batch with it (every request
growing until its predicted end, then freeing its memory) to fit.

Speed: between batch changes the batch is fixed, and a step of ``B`` requests holding ``S``
context tokens takes ``base(B) + slope(B) * S``, with ``S`` growing by ``B`` per step. The
time after ``k`` steps is therefore ``t0 + extra + k*u + v*k*(k-1)/2`` with
``u = base + slope*S0`` and ``v = slope*B``: the instance jumps straight to its next event
(a request finishing, memory running out, or a step boundary where a newcomer joins). With
``exact=True`` every step is an event; both modes give the same timestamps up to rounding.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import overload

import numpy as np

from tandem.control.admission import (
    DEFAULT_AGING_TOKENS_PER_S,
    NO_HORIZON_TOKENS,
    admission_hold_until,
    admission_priority,
    can_admit,
    fits_predicted,
    next_step_overflows,
    num_to_preempt,
)
from tandem.control.ares import projected_peak_kv_arrays
from tandem.control.views import RunningRequestView, WaitingRequestView
from tandem.perf.base import CostModel
from tandem.sim.events import Clock, EventQueue, Priority
from tandem.sim.itl import ItlRecorder
from tandem.sim.prediction import PredictionSource
from tandem.sim.request import SimRequest

#: Projected KV and predictive admission on arrays, and waiting views built as they are read
#: (False: the reference code, one request at a time, every view built; the same values and
#: decisions, checked by a test).
VECTORISED = True


class _WaitingViews(Sequence[WaitingRequestView]):
    """``DecodeInstance.waiting()``: views of the queue, built as they are read (the same
    values as building them all at once: a prediction depends only on the request and its
    tokens generated). The queue is not copied (under overload it holds thousands, and a
    rescheduler reads it at every tick): the views are valid until the instance changes, which
    is never while a policy decides."""

    __slots__ = ("_requests", "_predictor")

    def __init__(
        self, requests: deque[SimRequest] | list[SimRequest], predictor: PredictionSource | None
    ) -> None:
        self._requests = requests
        self._predictor = predictor

    def _view(self, request: SimRequest) -> WaitingRequestView:
        predictor = self._predictor
        predicted = None if predictor is None else predictor.remaining(request, request.generated)
        return WaitingRequestView(
            request.request_id, request.need_tokens, request.generated, predicted
        )

    def __len__(self) -> int:
        return len(self._requests)

    def __iter__(self) -> Iterator[WaitingRequestView]:
        return map(self._view, self._requests)

    @overload
    def __getitem__(self, index: int) -> WaitingRequestView: ...

    @overload
    def __getitem__(self, index: slice) -> list[WaitingRequestView]: ...

    def __getitem__(self, index: int | slice) -> WaitingRequestView | list[WaitingRequestView]:
        if isinstance(index, slice):
            return [self._view(r) for r in list(self._requests)[index]]
        return self._view(self._requests[index])


def _finish_step(request: SimRequest) -> int:
    """The instance step counter value at which a running request makes its last token."""
    return request.join_step + request.output_tokens - request.gen_at_join


class DecodeInstance:
    """One decode instance; implements ``tandem.control.views.DecodeInstanceView``."""

    def __init__(
        self,
        instance_id: int,
        cost: CostModel,
        max_batch_size: int,
        queue: EventQueue,
        clock: Clock,
        start_transfer: Callable[[SimRequest, DecodeInstance, float], None],
        on_finish: Callable[[SimRequest, float], None],
        on_left: Callable[[SimRequest, float], None] | None = None,
        *,
        exact: bool = False,
        record_timeline: bool = False,
        predictive_admission: bool = False,
        record_itl: bool = False,
        admission_max_wait_s: float = math.inf,
        admission_order: str = "fcfs",
        aging_tokens_per_s: float = DEFAULT_AGING_TOKENS_PER_S,
    ) -> None:
        self.instance_id = instance_id
        self.cost = cost
        self.kv_capacity_tokens = cost.kv_capacity_tokens
        self.max_batch_size = max_batch_size
        self._queue = queue
        self._clock = clock
        self._start_transfer = start_transfer
        self._on_finish = on_finish
        self._on_left = on_left
        self._leaving: set[int] = set()
        self._exact = exact
        self._predictive_admission = predictive_admission
        self._admission_max_wait_s = admission_max_wait_s
        self._shortest_first = admission_order == "shortest-predicted"
        self._aging = aging_tokens_per_s
        # When the head of the queue, held back by predictive admission, may no longer be.
        self._held_until_s: float | None = None
        # Migrations on their way here: request index -> (request, KV tokens reserved for it).
        self._incoming: dict[int, tuple[SimRequest, int]] = {}
        self._coeffs: dict[int, tuple[float, float]] = {}
        # Running batch, in the order requests joined (the last is the newest).
        self._running: dict[int, SimRequest] = {}
        # The running batch as arrays for predictive admission, in no particular order (the
        # projected peak does not depend on it): request index, prompt tokens and
        # ``gen_at_join - join_step`` in slots ``0 .. len(_running) - 1``; ``_slot`` maps a
        # request index to its slot. A request leaving is replaced by the last one.
        size = max(1, min(max_batch_size, 1024))
        self._arr_index = np.zeros(size, np.int64)
        self._arr_prompt = np.zeros(size, np.int64)
        self._arr_base = np.zeros(size, np.int64)
        # When each joined (a count): sorting by it gives the order of ``_running``.
        self._arr_seq = np.zeros(size, np.int64)
        self._joins = 0
        self._slot: dict[int, int] = {}
        self._finish_heap: list[tuple[int, int]] = []  # (finish step, request index)
        self._waiting: deque[SimRequest] = deque()
        self._joiners: list[SimRequest] = []
        self.steps = 0
        self._kv_tokens = 0  # as of the segment start
        self.kv_reserved_tokens = 0
        self._waiting_tokens = 0
        self._num_in_transfer = 0
        self._transferring: dict[int, SimRequest] = {}  # KV on its way from prefill
        self._extra_s = 0.0
        # The segment in progress (fixed batch) and its pending wake-up.
        self._busy = False
        self._seg_t0 = 0.0
        self._seg_extra = 0.0
        self._seg_u = 0.0
        self._seg_v = 0.0
        self._wake_k = 0
        self._version = 0
        self._cache_k = 0  # steps done as last computed for a view, valid until _cache_next_s
        self._cache_next_s = 0.0
        self.link_free_s = 0.0
        self.num_preemptions = 0
        self.busy_s = 0.0
        self.timeline: list[tuple[float, int, int]] | None = [] if record_timeline else None
        # What this instance asked of its cost model (checked against the measured range
        # after the run): batch sizes run, and the largest mean context per request.
        self.min_batch_run = 0
        self.max_batch_run = 0
        self.max_context_per_request = 0.0
        #: Inter-token gaps (``tandem.sim.itl``), when asked for: joiners waiting for their
        #: first step here (index -> stall), and those of the segment in progress.
        self.itl: ItlRecorder | None = ItlRecorder() if record_itl else None
        self._itl_joining: dict[int, float] = {}
        self._itl_seg_stalls: list[float] = []
        #: Set by the simulator when a prediction source is configured.
        self.predictor: PredictionSource | None = None
        # Projected KV, kept incrementally (see ``projected_kv_tokens``): each running request's
        # term ``kv + min(remaining, horizon)`` as of step ``_proj_ref``, and whether it grows.
        self._proj_horizon: int | None = None
        self._proj_ref = 0
        self._proj_sum = 0.0
        self._proj_growing = 0
        self._proj_terms: dict[int, tuple[float, bool]] = {}
        self._proj_unscored: dict[int, SimRequest] = {}
        #: Set by ``sim.placement_rows``: where to note that this instance's placement inputs
        #: may have changed (any change but time passing within a step).
        self.changed: set[int] | None = None

    # -- views (as of the clock's now: the same in fast-forward and exact modes) -----------------

    def _steps_now(self) -> int:
        if not self._busy:
            return 0
        t = self._clock.now_s
        if t < self._cache_next_s:  # views are read many times between step boundaries
            return self._cache_k
        k, self._cache_next_s = self._steps_until(t)
        self._cache_k = k
        return k

    @property
    def kv_used_tokens(self) -> int:
        return self._kv_tokens + self._steps_now() * len(self._running)

    @property
    def kv_pending_tokens(self) -> int:
        return self.kv_reserved_tokens + self._waiting_tokens

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_pending(self) -> int:
        return len(self._waiting) + self._num_in_transfer + len(self._joiners)

    def running(self) -> list[RunningRequestView]:
        steps = self.steps + self._steps_now()
        requests = list(self._running.values())
        generated = [r.gen_at_join + steps - r.join_step for r in requests]
        predicted = self._predictions(requests, generated)
        return [
            RunningRequestView(r.request_id, r.prompt_tokens, g, r.prompt_tokens + g, p)
            for r, g, p in zip(requests, generated, predicted, strict=True)
        ]

    @property
    def kv_waiting_tokens(self) -> int:
        return self._waiting_tokens

    def waiting(self) -> Sequence[WaitingRequestView]:
        """The waiting queue as of now; each view is built when it is read (under overload the
        queue holds thousands and a rescheduler reads its head)."""
        views = _WaitingViews(self._waiting, self.predictor)
        return views if VECTORISED else list(views)

    def _predictions(self, requests: list[SimRequest], generated: list[int]) -> list[float | None]:
        """Predicted remaining tokens for views; ``None`` each without a prediction source."""
        predictor = self.predictor
        if predictor is None or not predictor.enabled:
            return [None] * len(requests)
        return list(predictor.remaining_many(requests, generated))

    def projected_kv_tokens(self, horizon_tokens: int) -> float | None:
        """``kv_used + sum(min(predicted_remaining, horizon))`` over the running batch.

        Kept incrementally, since placement reads it for every instance at every placement: a
        request's term ``kv + min(rem, horizon)`` is constant while ``rem <= horizon`` and grows
        by one a step otherwise, so the sum is stored at a reference step with the count of
        growing terms; joins add a term, departures remove theirs. Every ``refresh_tokens``
        steps (when predictions refresh) the sum is rebuilt from fresh predictions.
        """
        return self._projected_at(self.steps + self._steps_now(), horizon_tokens)

    def _projected_at(self, steps: int, horizon_tokens: int) -> float | None:
        """``projected_kv_tokens`` with the instance's step count as of now (``steps``)."""
        predictor = self.predictor
        if predictor is None or not predictor.enabled:
            return None
        if (
            horizon_tokens != self._proj_horizon
            or steps - self._proj_ref >= predictor.refresh_tokens
        ):
            self._proj_horizon = horizon_tokens
            self._proj_ref = steps
            self._proj_sum = 0.0
            self._proj_growing = 0
            self._proj_terms.clear()
            self._touch()
            if VECTORISED and len(self._running) >= 32:
                self._score_all(steps, horizon_tokens)
            else:
                self._proj_unscored = dict(self._running)
        if self._proj_unscored:
            self._touch()
            self._score(list(self._proj_unscored.values()), steps, horizon_tokens)
            self._proj_unscored.clear()
        return self._proj_sum + self._proj_growing * (steps - self._proj_ref)

    def _touch(self) -> None:
        if self.changed is not None:
            self.changed.add(self.instance_id)

    def placement_row(self, horizon_tokens: int) -> tuple[int, int, int, float | None, float]:
        """KV used, KV pending, requests running or pending, projected KV, and the time until
        which they hold unless ``changed`` is told otherwise (the next step's end)."""
        # ``kv_used_tokens``, ``kv_pending_tokens`` and ``num_pending`` written out, and the
        # steps read once: this is read for most instances at every placement.
        running = len(self._running)
        k = self._steps_now()
        return (
            self._kv_tokens + k * running,
            self.kv_reserved_tokens + self._waiting_tokens,
            running + len(self._waiting) + self._num_in_transfer + len(self._joiners),
            self._projected_at(self.steps + k, horizon_tokens),
            self._cache_next_s if self._busy else math.inf,
        )

    def _score(self, requests: list[SimRequest], steps: int, horizon: int) -> None:
        if not VECTORISED or len(requests) < 32:  # below that, numpy's overhead costs more
            self._score_reference(requests, steps, horizon)
            return
        n = len(requests)
        index = np.fromiter((r.index for r in requests), np.int64, n)
        generated = np.fromiter((r.gen_at_join - r.join_step for r in requests), np.int64, n)
        generated += steps
        prompt = np.fromiter((r.prompt_tokens for r in requests), np.int64, n)
        self._score_arrays(index, prompt, generated, steps, horizon)

    def _score_all(self, steps: int, horizon: int) -> None:
        """``_score`` of the whole running batch on a rebuild, from the batch's arrays instead
        of the requests (the same values: the same order, that of ``_running``)."""
        self._proj_unscored.clear()
        n = len(self._running)
        order = np.argsort(self._arr_seq[:n])
        generated = self._arr_base[:n][order] + steps
        self._score_arrays(
            self._arr_index[:n][order], self._arr_prompt[:n][order], generated, steps, horizon
        )

    def _score_arrays(
        self,
        index: np.ndarray,
        prompt: np.ndarray,
        generated: np.ndarray,
        steps: int,
        horizon: int,
    ) -> None:
        """Add the projected-KV terms of the requests ``index`` (prompts, tokens generated as
        of ``steps``), in that order."""
        assert self.predictor is not None
        remaining = self.predictor.remaining_array(index, generated)
        back = steps - self._proj_ref  # growing terms are stored as of the reference step
        growing = remaining > horizon
        # ``kv + min(rem, horizon)``; a growing term as of the reference step. Whole numbers
        # and the same float additions as one request at a time: the same values.
        terms = (prompt + generated) + np.where(growing, float(horizon - back), remaining)
        self._proj_growing += int(np.count_nonzero(growing))
        # Summed in order, as one request at a time (``cumsum`` adds sequentially).
        self._proj_sum = float(np.cumsum(np.concatenate(([self._proj_sum], terms)))[-1])
        pairs = zip(terms.tolist(), growing.tolist(), strict=True)
        self._proj_terms.update(zip(index.tolist(), pairs, strict=True))

    def _score_reference(self, requests: list[SimRequest], steps: int, horizon: int) -> None:
        """``_score`` one request at a time."""
        generated = [r.gen_at_join + steps - r.join_step for r in requests]
        assert self.predictor is not None
        remaining = self.predictor.remaining_many(requests, generated)
        back = steps - self._proj_ref
        terms = self._proj_terms
        for request, g, rem in zip(requests, generated, remaining, strict=True):
            growing = rem > horizon
            term = request.prompt_tokens + g + (horizon if growing else rem)
            if growing:
                term -= back
                self._proj_growing += 1
            terms[request.index] = (term, growing)
            self._proj_sum += term

    def _unproject(self, index: int) -> None:
        """A request left the running batch: remove its projected-KV term."""
        entry = self._proj_terms.pop(index, None)
        if entry is not None:
            self._proj_sum -= entry[0]
            self._proj_growing -= entry[1]
        else:
            self._proj_unscored.pop(index, None)

    def step_time_s(self) -> float:
        if not self._running:
            return 0.0
        return self.cost.decode_step_time_s(len(self._running), self.kv_used_tokens)

    def kv_copy_time_s(self, kv_tokens: int) -> float:
        return self.cost.kv_transfer_time_s(kv_tokens)

    # -- stimuli from the cluster -------------------------------------------------------------

    def place(self, request: SimRequest, now_s: float) -> None:
        """The placement policy chose this instance for ``request``."""
        request.decode_instance = self.instance_id
        request.waiting_since_s = now_s
        predictor = self.predictor
        if self._shortest_first and predictor is not None and predictor.enabled:
            self._enqueue_by_priority(request, predictor)
        else:
            self._waiting.append(request)
        self._waiting_tokens += request.need_tokens
        self._kick(now_s)

    def _enqueue_by_priority(self, request: SimRequest, predictor: PredictionSource) -> None:
        """Insert ``request`` into the waiting queue by ``admission_priority`` (its arrival and
        predicted remaining tokens, both fixed while it waits, so the queue stays sorted)."""
        remaining = predictor.remaining_many([request], [request.generated])[0]
        key = admission_priority(request.arrival_s, remaining, self._aging)
        request.admit_key = key
        waiting = self._waiting
        position = len(waiting)
        while position > 0 and waiting[position - 1].admit_key > key:
            position -= 1
        waiting.insert(position, request)

    def transfer_done(self, request: SimRequest, now_s: float) -> None:
        """The request's KV has arrived; it joins at the next step boundary."""
        self._num_in_transfer -= 1
        self._transferring.pop(request.index, None)
        self._joiners.append(request)
        self._kick(now_s)

    # -- migration hooks (``sim.migration`` drives them) ------------------------------------------

    def running_request(self, index: int) -> SimRequest | None:
        return self._running.get(index)

    def generated_now(self, request: SimRequest) -> int:
        """Tokens the running ``request`` has generated as of now."""
        return request.gen_at_join + self.steps + self._steps_now() - request.join_step

    def withdraw(self, request: SimRequest) -> bool:
        """Take ``request`` out of the queue of requests waiting for memory (to be placed on
        another instance); False if it is not waiting here."""
        try:
            self._waiting.remove(request)
        except ValueError:
            return False
        self._waiting_tokens -= request.need_tokens
        self._touch()
        return True

    def can_reserve(self, tokens: int) -> bool:
        """Whether ``tokens`` of KV can be promised now, leaving room for one more step."""
        return can_admit(
            tokens,
            kv_capacity_tokens=self.kv_capacity_tokens,
            kv_used_tokens=self.kv_used_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens,
            num_running=len(self._running),
            num_joining=self._num_in_transfer + len(self._joiners),
            max_batch_size=self.max_batch_size,
        )

    def reserve(self, tokens: int, now_s: float, request: SimRequest | None = None) -> None:
        """Promise KV to an incoming migration of ``request``; re-plan at the next boundary."""
        self.kv_reserved_tokens += tokens
        if request is not None:
            self._incoming[request.index] = (request, tokens)
        self._kick(now_s)

    def release(self, tokens: int, request: SimRequest | None = None) -> None:
        self.kv_reserved_tokens -= tokens
        self._touch()
        if request is not None:
            self._incoming.pop(request.index, None)

    def leave(self, request: SimRequest, now_s: float) -> None:
        """Take ``request`` off the batch at the next step boundary (``on_left`` is called)."""
        self._leaving.add(request.index)
        self._kick(now_s)

    def migration_arrived(self, request: SimRequest, reserved_tokens: int, now_s: float) -> None:
        """A migrated request's KV is all here; it joins at the next step. Its reservation of
        ``reserved_tokens`` is swapped for what it really holds (``need_tokens``)."""
        self.kv_reserved_tokens += request.need_tokens - reserved_tokens
        self._incoming.pop(request.index, None)
        self._joiners.append(request)
        self._kick(now_s)

    def on_wake(self, now_s: float, version: int, k: int) -> None:
        """A scheduled step boundary; stale wake-ups (superseded by a later plan) are ignored."""
        if version == self._version and self._busy:
            self._boundary(now_s, k)

    # -- closed-form timing -------------------------------------------------------------------

    def _time_after(self, k: int) -> float:
        return self._seg_t0 + self._seg_extra + k * self._seg_u + self._seg_v * (k * (k - 1) / 2)

    def _steps_done_by(self, t: float) -> int:
        """Steps of the current segment completed at or before ``t``."""
        return self._steps_until(t)[0]

    def _steps_until(self, t: float) -> tuple[int, float]:
        """Steps of the current segment completed at or before ``t``, and when the next one
        ends (``inf`` past the planned wake-up). ``_time_after`` is written out here, the same
        operations in the same order: this runs at nearly every read of a view."""
        t0, extra, u, v, wake = (
            self._seg_t0,
            self._seg_extra,
            self._seg_u,
            self._seg_v,
            self._wake_k,
        )
        start = t0 + extra
        x = t - t0 - extra
        if x < u:
            k = 0
        else:
            if v <= 0.0:
                k = int(x // u)
            else:
                b = u - v / 2
                k = int((-b + math.sqrt(b * b + 2 * v * x)) / v)
            k = max(0, min(k, wake))
            while k < wake and start + (k + 1) * u + v * ((k + 1) * k / 2) <= t:
                k += 1
            while k > 0 and start + k * u + v * (k * (k - 1) / 2) > t:
                k -= 1
        if k >= wake:
            return k, math.inf
        return k, start + (k + 1) * u + v * ((k + 1) * k / 2)

    def _kick(self, now_s: float) -> None:
        """Something arrived: act now if idle, else make sure we wake at the next boundary."""
        self._touch()
        if not self._busy:
            self._boundary(now_s, 0)
            return
        nxt = self._steps_done_by(now_s) + 1
        if nxt < self._wake_k:
            self._schedule_wake(nxt)

    def _schedule_wake(self, k: int) -> None:
        self._wake_k = k
        self._version += 1
        self._queue.push(self._time_after(k), Priority.DECODE_STEP_DONE, (self, self._version, k))

    # -- a step boundary ----------------------------------------------------------------------

    def _boundary(self, now_s: float, k: int) -> None:
        self._touch()
        if self._busy:
            self.steps += k
            self._kv_tokens += k * len(self._running)
            self.busy_s += now_s - self._seg_t0
            self._busy = False
            context = self._kv_tokens / len(self._running)  # before anyone finishes
            if context > self.max_context_per_request:
                self.max_context_per_request = context
            if self.itl is not None:
                self._itl_close(k)
        self._finish_due(now_s)
        if self._leaving:
            self._remove_leaving(now_s)
        for request in self._joiners:
            self.kv_reserved_tokens -= request.need_tokens
            self._join(request, now_s)
        self._joiners.clear()
        self._preempt_if_needed(now_s)
        self._admit_waiting(now_s)
        self._start_segment(now_s)

    def _itl_close(self, k: int) -> None:
        """The segment ends after ``k`` steps: record its gaps and its joiners' stalls."""
        assert self.itl is not None
        u, extra = self._seg_u, self._seg_extra
        self.itl.segments.append((k, len(self._running), u, self._seg_v, extra))
        self.itl.stalls.extend((extra + u, stall) for stall in self._itl_seg_stalls)
        self._itl_seg_stalls = []

    def _finish_due(self, now_s: float) -> None:
        heap = self._finish_heap
        while heap and heap[0][0] <= self.steps:
            step, index = heapq.heappop(heap)
            request = self._running.get(index)
            if request is None or _finish_step(request) != step:
                continue  # stale: the request left (preempted or migrated) since
            del self._running[index]
            self._arr_remove(index)
            self._unproject(index)
            request.generated = request.output_tokens
            self._kv_tokens -= request.prompt_tokens + request.output_tokens
            self._on_finish(request, now_s)

    def _remove_leaving(self, now_s: float) -> None:
        for index in sorted(self._leaving):
            request = self._running.pop(index, None)
            if request is None:
                continue  # finished or preempted meanwhile; the migration notices
            self._arr_remove(index)
            self._unproject(index)
            request.generated = request.gen_at_join + self.steps - request.join_step
            self._kv_tokens -= request.prompt_tokens + request.generated
            if self._itl_joining.pop(index, None) is None:
                request.last_token_s = now_s  # its last step here ended now
            if self._on_left is not None:
                self._on_left(request, now_s)
        self._leaving.clear()

    def _join(self, request: SimRequest, now_s: float) -> None:
        if request.paused_since_s is not None:
            request.pause_s += now_s - request.paused_since_s
            request.paused_since_s = None
        request.join_step = self.steps
        request.gen_at_join = request.generated
        if self.itl is not None:
            self._itl_joining[request.index] = now_s - request.last_token_s
        self._running[request.index] = request
        self._arr_add(request)
        if self._proj_horizon is not None:
            self._proj_unscored[request.index] = request
        self._kv_tokens += request.prompt_tokens + request.generated
        heapq.heappush(self._finish_heap, (_finish_step(request), request.index))

    def _arr_add(self, request: SimRequest) -> None:
        n = len(self._slot)
        if n == self._arr_index.size:
            for name in ("_arr_index", "_arr_prompt", "_arr_base", "_arr_seq"):
                setattr(self, name, np.concatenate((getattr(self, name), np.zeros(n, np.int64))))
        self._slot[request.index] = n
        self._arr_index[n] = request.index
        self._arr_prompt[n] = request.prompt_tokens
        self._arr_base[n] = request.gen_at_join - request.join_step
        self._joins += 1
        self._arr_seq[n] = self._joins

    def _arr_remove(self, index: int) -> None:
        slot = self._slot.pop(index)
        last = len(self._slot)
        if slot != last:
            moved = int(self._arr_index[last])
            self._slot[moved] = slot
            self._arr_index[slot] = moved
            self._arr_prompt[slot] = self._arr_prompt[last]
            self._arr_base[slot] = self._arr_base[last]
            self._arr_seq[slot] = self._arr_seq[last]

    def _preempt_if_needed(self, now_s: float) -> None:
        running = self._running
        if not next_step_overflows(
            kv_capacity_tokens=self.kv_capacity_tokens,
            kv_used_tokens=self._kv_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens,
            num_running=len(running),
        ):
            return
        steps = self.steps
        num_victims = num_to_preempt(
            [
                r.prompt_tokens + r.gen_at_join + steps - r.join_step
                for r in reversed(running.values())
            ],
            kv_capacity_tokens=self.kv_capacity_tokens,
            kv_used_tokens=self._kv_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens,
        )
        for _ in range(num_victims):
            index = next(reversed(running))
            victim = self._running.pop(index)
            self._arr_remove(index)
            self._unproject(index)
            victim.generated = victim.gen_at_join + self.steps - victim.join_step
            self._kv_tokens -= victim.prompt_tokens + victim.generated
            victim.needs_recompute = True
            victim.need_tokens = victim.prompt_tokens + victim.generated
            victim.num_preemptions += 1
            self.num_preemptions += 1
            if self._itl_joining.pop(index, None) is None:
                victim.last_token_s = now_s  # it ran a step here; a joiner ran none
            victim.waiting_since_s = now_s
            victim.admit_key = -math.inf  # resumes first, in any order of the queue
            self._waiting.appendleft(victim)
            self._waiting_tokens += victim.need_tokens

    def _admit_waiting(self, now_s: float) -> None:
        self._held_until_s = None
        while self._waiting:
            request = self._waiting[0]
            if not can_admit(
                request.need_tokens,
                kv_capacity_tokens=self.kv_capacity_tokens,
                kv_used_tokens=self._kv_tokens,  # at a step boundary: the KV used now
                kv_reserved_tokens=self.kv_reserved_tokens,
                num_running=len(self._running),
                num_joining=self._num_in_transfer + len(self._joiners),
                max_batch_size=self.max_batch_size,
            ):
                break  # FCFS: the head waits for memory or a slot, nobody overtakes it
            if self._predictive_admission:
                # Predictions may hold a request back for a bounded time only: past it, the
                # greedy rule alone decides (docs/rescheduling.md, "bounded wait").
                until = admission_hold_until(request.waiting_since_s, self._admission_max_wait_s)
                if now_s < until and not self._fits_predicted(request):
                    if until < math.inf:
                        self._held_until_s = until
                    break
            self._waiting.popleft()
            self._waiting_tokens -= request.need_tokens
            if request.needs_recompute:
                request.needs_recompute = False
                self._extra_s += self.cost.prefill_time_s([request.need_tokens])
                self._join(request, now_s)
            else:
                self.kv_reserved_tokens += request.need_tokens
                self._num_in_transfer += 1
                self._transferring[request.index] = request
                self._start_transfer(request, self, now_s)

    def _fits_predicted(self, request: SimRequest) -> bool:
        """Predictive admission (``control.admission.fits_predicted``) for ``request``. Without
        a prediction source, or on an idle instance (so nothing waits forever), it admits
        without asking for predictions.

        The running batch's request indices, prompts and ``gen_at_join - join_step`` are kept
        as arrays, updated as requests join and leave, and the peak is computed on arrays
        (``projected_peak_kv_arrays``): the same decision as ``fits_predicted`` on the list of
        pairs (``_fits_predicted_reference``, kept for the test that checks it)."""
        predictor = self.predictor
        if predictor is None or not predictor.enabled:
            return True
        if not self._running and not self._num_in_transfer and not self._joiners:
            return True
        if not VECTORISED:
            return self._fits_predicted_reference(request)
        n = len(self._running)
        generated = self._arr_base[:n] + self.steps
        kv = (self._arr_prompt[:n] + generated).astype(np.float64)
        remaining = predictor.remaining_array(self._arr_index[:n], generated)
        # Requests promised memory here grow too once they join: transfers from prefill,
        # transfers done but not yet joined, and migrations on their way.
        promised = [*self._transferring.values(), *self._joiners]
        promised += [r for r, _ in self._incoming.values()]
        others = [*promised, request]
        other_rem = predictor.remaining_many(others, [r.generated for r in others])
        other_kv = [float(r.prompt_tokens + r.generated) for r in promised]
        other_kv.append(float(request.need_tokens))
        # Whatever else is reserved (a migration's copy margin) counts as constant KV.
        # NOTE: this subtracts the promised requests' predicted *remaining* tokens, not their
        # KV (which the batch already counts). Measured in issue 19, it is not what made
        # predictive admission lose to greedy (docs/rescheduling.md, "bounded wait"); and
        # subtracting the KV instead exposes another error that this one hides: a promised
        # request is projected to grow from now, but joins only after its transfer, so it
        # ends later than projected (with true lengths, 1 preemption in the test that expects
        # none). Kept as it was until the projection starts promised requests when they join.
        reserved = self.kv_reserved_tokens - sum(other_rem[:-1])
        # The peak is at most everyone's KV at their ends, all held at once; when that fits
        # with a token to spare (float sums in another order differ by far less), it fits.
        everything = (
            max(0.0, reserved)
            + float(kv.sum())
            + float(remaining.sum())
            + sum(other_kv)
            + sum(other_rem)
        )
        if everything + 1.0 <= self.kv_capacity_tokens:
            return True
        peak = projected_peak_kv_arrays(
            np.concatenate((kv, np.array(other_kv))),
            np.concatenate((remaining, np.array(other_rem))),
            float(max(0.0, reserved)),
            NO_HORIZON_TOKENS,
        )
        return peak <= self.kv_capacity_tokens

    def _fits_predicted_reference(self, request: SimRequest) -> bool:
        """``_fits_predicted`` one request at a time, through ``fits_predicted``."""
        assert self.predictor is not None
        running = list(self._running.values())
        generated = [r.gen_at_join + self.steps - r.join_step for r in running]
        promised = [*self._transferring.values(), *self._joiners]
        promised += [r for r, _ in self._incoming.values()]
        generated += [r.generated for r in promised]
        everyone = [*running, *promised, request]
        remaining = self.predictor.remaining_many(everyone, [*generated, request.generated])
        batch = [
            (float(r.prompt_tokens + g), rem)
            for r, g, rem in zip(everyone, generated, remaining, strict=False)
        ]
        other = self.kv_reserved_tokens - sum(p for _, p in batch[len(running) :])
        return fits_predicted(
            batch,
            (float(request.need_tokens), remaining[-1]),
            other_reserved_tokens=other,
            kv_capacity_tokens=self.kv_capacity_tokens,
        )

    def _start_segment(self, now_s: float) -> None:
        batch = len(self._running)
        if self.timeline is not None:
            self.timeline.append((now_s, batch, self._kv_tokens))
        if batch == 0:
            return
        if self.itl is not None and self._itl_joining:
            self._itl_seg_stalls = list(self._itl_joining.values())
            self._itl_joining.clear()
        coeffs = self._coeffs.get(batch)
        if coeffs is None:
            coeffs = self._coeffs[batch] = self.cost.decode_step_coeffs(batch)
            if batch > self.max_batch_run:
                self.max_batch_run = batch
            if not self.min_batch_run or batch < self.min_batch_run:
                self.min_batch_run = batch
        base_s, slope_s = coeffs
        heap = self._finish_heap
        while True:  # drop stale heap entries so the top is a real finish
            step, index = heap[0]
            request = self._running.get(index)
            if request is not None and _finish_step(request) == step:
                break
            heapq.heappop(heap)
        k_finish = heap[0][0] - self.steps
        k_oom = (self.kv_capacity_tokens - self.kv_reserved_tokens - self._kv_tokens) // batch
        k_end = 1 if self._exact else max(1, min(k_finish, k_oom))
        self._seg_t0 = now_s
        self._seg_extra = self._extra_s
        self._extra_s = 0.0
        self._seg_u = base_s + slope_s * self._kv_tokens
        self._seg_v = slope_s * batch
        self._busy = True
        self._cache_k = 0
        self._cache_next_s = self._seg_t0 + self._seg_extra + self._seg_u
        if self._held_until_s is not None and k_end > 1:
            # Wake at the first boundary at or after the held head's deadline.
            k = max(1, self._steps_done_by(self._held_until_s))
            while self._time_after(k) < self._held_until_s:
                k += 1
            k_end = min(k_end, k)
        self._schedule_wake(k_end)
