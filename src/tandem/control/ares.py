"""ARES-style predictive decode placement and rescheduling.

ARES (Wang et al., arXiv 2510.13668) adds *predicted remaining length* to decode load
balancing; its exact algorithm is not public, so this is our design (docs/rescheduling.md has a
worked example).

Projected load. For a decode instance with running requests r (KV ``kv_r``, predicted
remaining ``rem_r``) and ``pending`` KV promised to newcomers, the KV it will hold ``h`` steps
from now, if nothing else arrives, is ``P(h) = pending + sum over r with rem_r > h of
(kv_r + h)``: every request grows by one token a step until it ends and frees its memory. The
*projected peak* is the maximum of ``P(h)`` for ``0 <= h <= horizon``; divided by capacity it is
the instance's projected load. An instance whose projected load passes ``high_watermark`` will
run out of memory within the horizon (and preempt) unless load moves away.

Placement (``ares``): among the instances where the newcomer can start on arrival (its KV fits
in the memory free now and a batch slot is open; all instances if none), the one whose projected
KV after taking it, as a share of capacity, is smallest (``projected_kv_tokens`` is an upper
bound of the peak that the data plane keeps cheaply); ties to the fewest requests. Without the
first condition, an instance full now but predicted to drain looks best and the newcomer waits
there: on servegen-r1 at 16P16D that doubled P99 TTFT against least-KV placement.

Rescheduler (``ares``), every ``interval_s``:

1. Re-placement: a request waiting on an instance whose free memory cannot take it moves to the
   least-loaded instance that can start it now and stays under ``high_watermark``.
2. Sources are instances whose projected peak exceeds ``high_watermark``, and instances about
   to run out of memory *now* (free memory for fewer than ``urgent_steps`` steps of their
   batch's growth) whatever their projection says: predictions that ran short miss those.
   Urgent ones go first, then the most loaded.
3. From a source, move the request with the most predicted future per byte of present KV
   (``min(rem, horizon) / kv``): it relieves the most growth for the least copying. From an
   urgent source, move the one holding the most KV instead: memory now is what runs out, and
   one large move frees what many small ones would (measured at 256 instances: 2 preemptions
   instead of 335, and half the migrations). Never one predicted to end within
   ``min_remaining_tokens`` (about to finish), nor one moved in the last ``cooldown_s`` (no
   ping-pong).
4. Accept only if (a) the destination has room for the request's KV and projected growth now,
   (b) the benefit beats the cost: the request's predicted remaining decode time is at least
   ``benefit_ratio`` times its KV copy time, and (c) the destination's projected load after
   the move stays under ``high_watermark`` and under the source's after the move (the gap
   shrinks without flipping). An urgent source that finds no such destination (when the
   whole cluster is projected over the watermark, say) sheds instead to the least-loaded
   destination that keeps more steps of free memory than the source after the move
   (Llumnix's rule, in current memory): that is what prevents the preemption.
5. At most one migration out of each source and into each destination per tick.

Without predictions (``None``), tokens generated so far stand in for the remaining length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tandem.control.policies import (
    _PLACEMENT,
    _RESCHEDULER,
    DecodePlacementPolicy,
    DecodeRescheduler,
    Migration,
    register,
)
from tandem.control.views import (
    DecodeInstanceView,
    NewRequestView,
    RunningRequestView,
    WaitingRequestView,
)


def projected_peak_kv(
    requests: Sequence[tuple[float, float]], pending_tokens: float, horizon_tokens: int
) -> float:
    """Peak over ``0 <= h <= horizon`` of ``pending + sum_{rem > h} (kv + h)``.

    ``requests`` holds ``(kv_tokens, predicted_remaining)`` pairs. The sum only drops when a
    request ends, so the peak is at h = 0, at the horizon, or just before some request ends.
    """
    if not requests:
        return pending_tokens
    by_remaining = sorted(requests, key=lambda p: p[1], reverse=True)
    best = pending_tokens + sum(kv for kv, _ in requests)
    kv_sum = 0.0
    for count, (kv, rem) in enumerate(by_remaining, start=1):
        kv_sum += kv
        h = min(rem, horizon_tokens)
        # Requests with remaining >= rem are all alive just before step rem.
        best = max(best, pending_tokens + kv_sum + h * count)
    return best


def projected_peak_kv_arrays(
    kv_tokens: np.ndarray, remaining: np.ndarray, pending_tokens: float, horizon_tokens: int
) -> float:
    """``projected_peak_kv`` on arrays (KV tokens, predicted remaining), vectorised: the same
    value, bit for bit, when the KV tokens are whole numbers (as they always are: sums of
    them are exact in any order). The order of ties is kept (a stable sort), as there."""
    n = kv_tokens.size
    if n == 0:
        return pending_tokens
    order = np.argsort(-remaining, kind="stable")
    kv_sum = np.cumsum(kv_tokens[order], dtype=np.float64)
    h = np.minimum(remaining[order], float(horizon_tokens))
    points = pending_tokens + kv_sum + h * np.arange(1, n + 1, dtype=np.float64)
    return max(pending_tokens + float(kv_sum[-1]), float(points.max()))


def remaining_estimate(r: RunningRequestView) -> float:
    if r.predicted_remaining_tokens is not None:
        return r.predicted_remaining_tokens
    return float(r.tokens_generated)  # no predictor: as long again as it has run


@register(_PLACEMENT, "ares")
class AresPlacement(DecodePlacementPolicy):
    """Least projected KV (current plus predicted growth) after taking the newcomer."""

    def __init__(self, horizon_tokens: int = 1024) -> None:
        self.horizon_tokens = horizon_tokens

    def _newcomer(self, request: NewRequestView) -> tuple[int, float]:
        """The newcomer's KV now (prompt plus its first token) and with its predicted growth
        over the horizon."""
        new_rem = (
            request.predicted_output_tokens - 1
            if request.predicted_output_tokens is not None
            else 0.0
        )
        need_now = request.prompt_tokens + 1
        return need_now, need_now + min(new_rem, self.horizon_tokens)

    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        need_now, new_kv = self._newcomer(request)
        scores = []
        for d in instances:
            busy = d.num_running + d.num_pending
            pending = d.kv_pending_tokens
            used = d.kv_used_tokens
            # Can the newcomer start on arrival (memory free now, a batch slot)? Waiting in a
            # queue costs TTFT that a lower projection elsewhere does not buy back.
            waits = used + pending + need_now > d.kv_capacity_tokens or busy >= d.max_batch_size
            projected = d.projected_kv_tokens(self.horizon_tokens)
            if projected is None:
                scores.append((waits, (used + pending) / d.kv_capacity_tokens, busy))
                continue
            load = (projected + pending + new_kv) / d.kv_capacity_tokens
            scores.append((waits, load, busy))
        return scores.index(min(scores))

    def choose_arrays(
        self,
        request: NewRequestView,
        used: np.ndarray,
        pending: np.ndarray,
        busy: np.ndarray,
        projected: np.ndarray,
        capacity: np.ndarray,
        max_batch: np.ndarray,
    ) -> int:
        """``choose`` on arrays of the instances' KV used, KV pending, requests running or
        pending, projected KV (NaN for ``None``), KV capacity and batch limit: the same choice
        (the same float operations, and the first of equal scores), without reading every
        instance in Python (``tandem.sim.placement_rows`` keeps the arrays)."""
        need_now, new_kv = self._newcomer(request)
        base = used + pending
        waits = (base + need_now > capacity) | (busy >= max_batch)
        unprojected = np.isnan(projected)
        if unprojected.any():
            load = np.where(unprojected, base / capacity, (projected + pending + new_kv) / capacity)
        else:
            load = (projected + pending + new_kv) / capacity
        pool = np.flatnonzero(~waits)
        if pool.size == 0:
            pool = np.arange(waits.size)
        pool_load = load[pool]
        pool = pool[pool_load == pool_load.min()]
        if pool.size > 1:
            pool_busy = busy[pool]
            pool = pool[pool_busy == pool_busy.min()]
        return int(pool[0])


@dataclass
class _Instance:
    index: int
    view: DecodeInstanceView
    #: Upper bound of the projected KV peak (plus pending), as a share of capacity.
    load: float
    #: KV tokens free now for newcomers: capacity minus used minus promised.
    room: float
    #: Requests running or pending (bounded by the batch limit).
    busy: int
    # The view's requests, read at most once a tick and only when needed (O(requests)); the
    # view does not change within a tick (moves happen after ``plan`` returns).

    @cached_property
    def waiting(self) -> Sequence[WaitingRequestView]:
        # Not copied: under overload the queue is long and only its head is read
        # (``AresRescheduler._stuck``), so a data plane may build its views as they are read.
        return self.view.waiting()

    @cached_property
    def running(self) -> list[RunningRequestView]:
        return list(self.view.running())

    @cached_property
    def running_pairs(self) -> list[tuple[float, float]]:
        """``(kv_tokens, predicted remaining)`` of every running request."""
        return [(float(r.kv_tokens), remaining_estimate(r)) for r in self.running]

    @cached_property
    def waiting_tokens(self) -> float:
        """KV tokens that the waiting requests would take."""
        return float(self.view.kv_waiting_tokens)

    def free_now(self) -> float:
        """KV tokens free now (as booked this tick), not counting what waiting requests
        would take."""
        return self.room + self.waiting_tokens

    def has_room(self, kv_tokens: float) -> bool:
        return self.room >= kv_tokens and self.busy < self.view.max_batch_size

    def add(self, kv_tokens: float, load: float, requests: int) -> None:
        """Book a request arriving (positive amounts) or leaving (negative) within a tick."""
        self.room -= kv_tokens
        self.load += load
        self.busy += requests


@register(_RESCHEDULER, "ares")
class AresRescheduler(DecodeRescheduler):
    """Predictive rebalancing by projected KV peak; see the module docstring."""

    def __init__(
        self,
        interval_s: float = 0.25,
        horizon_tokens: int = 1024,
        high_watermark: float = 1.0,
        min_remaining_tokens: int = 64,
        cooldown_s: float = 10.0,
        benefit_ratio: float = 10.0,
        urgent_steps: float = 64.0,
    ) -> None:
        self.interval_s = interval_s
        self.horizon_tokens = horizon_tokens
        self.high_watermark = high_watermark
        self.min_remaining_tokens = min_remaining_tokens
        self.cooldown_s = cooldown_s
        self.benefit_ratio = benefit_ratio
        self.urgent_steps = urgent_steps
        self._last_moved_s: dict[int, float] = {}

    def _state(self, index: int, view: DecodeInstanceView) -> _Instance:
        projected = view.projected_kv_tokens(self.horizon_tokens)
        used = view.kv_used_tokens
        pending = view.kv_pending_tokens
        upper = (used if projected is None else projected) + pending
        cap = view.kv_capacity_tokens
        busy = view.num_running + view.num_pending
        return _Instance(index, view, upper / cap, cap - used - pending, busy)

    def _cooling(self, now_s: float, request_id: int) -> bool:
        return now_s - self._last_moved_s.get(request_id, -1e18) < self.cooldown_s

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        if len(instances) < 2:
            return ()
        self._last_moved_s = {
            rid: t for rid, t in self._last_moved_s.items() if now_s - t < self.cooldown_s
        }
        states = [self._state(i, view) for i, view in enumerate(instances)]
        moves = self._replace_waiting(now_s, states)
        moves.extend(self._migrate_running(now_s, states))
        return moves

    # -- 1. requests stuck in a full instance's queue go where memory is free now -------------

    def _replace_waiting(self, now_s: float, states: list[_Instance]) -> list[Migration]:
        moves: list[Migration] = []
        for source in sorted(states, key=lambda s: (s.room, s.index)):
            if source.room >= 0:
                break  # everything waiting on the remaining instances fits where it is
            for w in self._stuck(source):
                if self._cooling(now_s, w.request_id):
                    continue
                rem = w.predicted_remaining_tokens
                growth = min(rem if rem is not None else 0.0, self.horizon_tokens)
                delta = (w.kv_tokens + growth) / source.view.kv_capacity_tokens
                dest = self._roomiest(states, source, w.kv_tokens + growth, delta)
                if dest is None:
                    break  # nowhere has room for the first stuck request: keep FCFS order
                moves.append(self._move(now_s, w.request_id, source, dest))
                source.add(-w.kv_tokens, -delta, -1)
                dest.add(w.kv_tokens, delta, 1)
        return moves

    def _move(self, now_s: float, request_id: int, source: _Instance, dest: _Instance) -> Migration:
        self._last_moved_s[request_id] = now_s
        return Migration(request_id, source.index, dest.index)

    @staticmethod
    def _stuck(source: _Instance) -> Iterator[WaitingRequestView]:
        """Waiting requests that do not fit in the memory free now, in queue order (read as
        the caller goes: it usually stops at the first)."""
        waiting = iter(source.waiting)
        fits = source.free_now()  # memory free for the queue
        for w in waiting:
            fits -= w.kv_tokens
            if fits < 0:
                yield w
                yield from waiting
                return

    def _roomiest(
        self, states: list[_Instance], source: _Instance, tokens: float, delta: float
    ) -> _Instance | None:
        best = None
        for s in states:
            if (
                s.index == source.index
                or not s.has_room(tokens)
                or s.load + delta > self.high_watermark
            ):
                continue
            if best is None or (s.load, s.index) < (best.load, best.index):
                best = s
        return best

    # -- 2. running requests leave instances whose projected peak overflows ------------------

    def _migrate_running(self, now_s: float, states: list[_Instance]) -> list[Migration]:
        sources = []
        for s in states:
            urgent = self._urgent(s)
            if s.load <= self.high_watermark and not urgent:
                continue  # the upper bound already fits: no overflow within the horizon
            pending = float(s.view.kv_pending_tokens)
            peak = projected_peak_kv(s.running_pairs, pending, self.horizon_tokens)
            s.load = peak / s.view.kv_capacity_tokens
            if s.load > self.high_watermark or urgent:
                sources.append((s, urgent))
        # Instances about to run out of memory first (predictions missed them), then by load.
        sources.sort(key=lambda item: (not item[1], -item[0].load, item[0].index))
        used: set[int] = set()
        moves: list[Migration] = []
        for source, urgent in sources:
            move = self._best_move(now_s, source, states, used, urgent)
            if move is not None:
                moves.append(move)
        return moves

    def _best_move(
        self,
        now_s: float,
        source: _Instance,
        states: list[_Instance],
        used: set[int],
        urgent: bool,
    ) -> Migration | None:
        candidates = [
            r
            for r in source.running
            if remaining_estimate(r) >= self.min_remaining_tokens
            and not self._cooling(now_s, r.request_id)
        ]
        if urgent:
            # Memory now is what runs out: free the most of it with one move.
            candidates.sort(key=lambda r: (-r.kv_tokens, r.request_id))
        else:
            # Growth over the horizon is what overflows: relieve the most per byte copied.
            candidates.sort(
                key=lambda r: (
                    -min(remaining_estimate(r), self.horizon_tokens) / r.kv_tokens,
                    r.request_id,
                )
            )
        destinations = sorted(
            (s for s in states if s.index != source.index and s.index not in used),
            key=lambda s: (s.load, s.index),
        )
        step_s = source.view.step_time_s()
        cap = source.view.kv_capacity_tokens
        for r in candidates[:8]:
            rem = remaining_estimate(r)
            if rem * step_s < self.benefit_ratio * source.view.kv_copy_time_s(r.kv_tokens):
                continue  # copying costs too much of what is left to gain
            need = r.kv_tokens + min(rem, self.horizon_tokens)
            delta = need / cap
            dest = self._destination(source, destinations, need, delta)
            if dest is None and urgent:
                dest = self._relief(source, destinations, r.kv_tokens, rem, need)
            if dest is None:
                continue
            source.load -= delta  # its room frees only when the request has left
            dest.add(r.kv_tokens, delta, 1)
            used.update((source.index, dest.index))
            return self._move(now_s, r.request_id, source, dest)
        return None

    def _destination(
        self, source: _Instance, destinations: list[_Instance], need: float, delta: float
    ) -> _Instance | None:
        """The least-loaded destination that stays under the watermark and the source."""
        for dest in destinations[:4]:
            if not dest.has_room(need):
                continue
            if dest.load + delta > min(self.high_watermark, source.load - delta):
                return None  # sorted by load: no later destination does better
            return dest
        return None

    def _relief(
        self,
        source: _Instance,
        destinations: list[_Instance],
        kv: float,
        rem: float,
        need: float,
    ) -> _Instance | None:
        """For a source about to run out of memory now: among the least-loaded destinations,
        one that keeps more steps of free memory than the source after the move and, with
        the request, is projected to fit its memory over the horizon.

        Memory that requests *waiting* at a destination would take counts as free here: they
        wait because the destination is projected full, and delaying one costs less than the
        preemption it prevents, which drops a running request's KV to recompute it."""
        source_after = (source.free_now() + kv) / max(1, source.view.num_running - 1)
        for dest in destinations[:16]:
            view = dest.view
            if dest.busy >= view.max_batch_size:
                continue
            free = dest.free_now()
            if free < need or (free - kv) / (view.num_running + 1) <= source_after:
                continue
            pairs = [*dest.running_pairs, (kv, rem)]
            reserved = view.kv_capacity_tokens - view.kv_used_tokens - free
            if projected_peak_kv(pairs, reserved, self.horizon_tokens) <= view.kv_capacity_tokens:
                return dest
        return None

    def _urgent(self, state: _Instance) -> bool:
        """Whether the memory free now holds fewer than ``urgent_steps`` steps of growth."""
        margin = self.urgent_steps * state.view.num_running
        # ``room`` counts waiting requests as taken: if even that is enough, skip the queue.
        return state.room < margin and state.free_now() < margin
