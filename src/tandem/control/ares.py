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

Placement (``ares``): the instance whose projected KV after taking the newcomer, as a share of
capacity, is smallest (``projected_kv_tokens`` is an upper bound of the peak that the data plane
keeps cheaply), ties to the fewest requests.

Rescheduler (``ares``), every ``interval_s``:

1. Projected load of every instance; sources are those above ``high_watermark`` or more than
   ``imbalance`` above the mean, most loaded first; destinations are the least loaded.
2. From a source, move the request with the most predicted future per byte of present KV
   (``min(rem, horizon) / kv``): it relieves the most growth for the least copying. Never one
   predicted to end within ``min_remaining_tokens`` (about to finish), nor one moved in the
   last ``cooldown_s`` (no ping-pong).
3. Accept only if (a) the destination's load after the move stays below the source's after the
   move by ``imbalance / 2`` (the gap shrinks without flipping: hysteresis), (b) the
   destination has room for the request's KV now, and (c) the benefit beats the cost: the
   request's predicted remaining decode time is at least ``benefit_ratio`` times its KV copy
   time.
4. At most one migration out of each source and into each destination per tick.

Without predictions (``None``), tokens generated so far stand in for the remaining length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandem.control.placement import kv_load
from tandem.control.policies import (
    _PLACEMENT,
    _RESCHEDULER,
    DecodePlacementPolicy,
    DecodeRescheduler,
    Migration,
    register,
)
from tandem.control.views import DecodeInstanceView, NewRequestView, RunningRequestView


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


def remaining_estimate(r: RunningRequestView) -> float:
    if r.predicted_remaining_tokens is not None:
        return r.predicted_remaining_tokens
    return float(r.tokens_generated)  # no predictor: as long again as it has run


@register(_PLACEMENT, "ares")
class AresPlacement(DecodePlacementPolicy):
    """Least projected KV (current plus predicted growth) after taking the newcomer."""

    def __init__(self, horizon_tokens: int = 1024) -> None:
        self.horizon_tokens = horizon_tokens

    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        new_rem = (
            request.predicted_output_tokens - 1
            if request.predicted_output_tokens is not None
            else 0.0
        )
        new_kv = request.prompt_tokens + 1 + min(new_rem, self.horizon_tokens)
        scores = []
        for d in instances:
            projected = d.projected_kv_tokens(self.horizon_tokens)
            if projected is None:
                scores.append((kv_load(d), d.num_running + d.num_pending))
                continue
            load = (projected + d.kv_pending_tokens + new_kv) / d.kv_capacity_tokens
            scores.append((load, d.num_running + d.num_pending))
        return scores.index(min(scores))


@dataclass
class _Instance:
    index: int
    view: DecodeInstanceView
    running: list[RunningRequestView]
    load: float


@register(_RESCHEDULER, "ares")
class AresRescheduler(DecodeRescheduler):
    """Predictive rebalancing by projected KV peak; see the module docstring."""

    def __init__(
        self,
        interval_s: float = 0.5,
        horizon_tokens: int = 1024,
        high_watermark: float = 0.9,
        imbalance: float = 0.1,
        min_remaining_tokens: int = 64,
        cooldown_s: float = 5.0,
        benefit_ratio: float = 10.0,
    ) -> None:
        self.interval_s = interval_s
        self.horizon_tokens = horizon_tokens
        self.high_watermark = high_watermark
        self.imbalance = imbalance
        self.min_remaining_tokens = min_remaining_tokens
        self.cooldown_s = cooldown_s
        self.benefit_ratio = benefit_ratio
        self._last_moved_s: dict[int, float] = {}

    def _load(self, view: DecodeInstanceView, running: list[RunningRequestView]) -> float:
        pairs = [(float(r.kv_tokens), remaining_estimate(r)) for r in running]
        peak = projected_peak_kv(pairs, float(view.kv_pending_tokens), self.horizon_tokens)
        return peak / view.kv_capacity_tokens

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        if len(instances) < 2:
            return ()
        states = []
        for i, view in enumerate(instances):
            running = list(view.running())
            states.append(_Instance(i, view, running, self._load(view, running)))
        mean = sum(s.load for s in states) / len(states)
        sources = sorted(
            (s for s in states if s.load > self.high_watermark or s.load > mean + self.imbalance),
            key=lambda s: -s.load,
        )
        used: set[int] = set()
        moves: list[Migration] = []
        for source in sources:
            if source.index in used:
                continue
            move = self._best_move(now_s, source, states, used)
            if move is not None:
                moves.append(move)
        self._last_moved_s = {
            rid: t for rid, t in self._last_moved_s.items() if now_s - t < self.cooldown_s
        }
        return moves

    def _best_move(
        self, now_s: float, source: _Instance, states: list[_Instance], used: set[int]
    ) -> Migration | None:
        candidates = [
            r
            for r in source.running
            if remaining_estimate(r) >= self.min_remaining_tokens
            and now_s - self._last_moved_s.get(r.request_id, -1e18) >= self.cooldown_s
        ]
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
        for r in candidates[:8]:
            rem = remaining_estimate(r)
            delta = (r.kv_tokens + min(rem, self.horizon_tokens)) / source.view.kv_capacity_tokens
            if rem * step_s < self.benefit_ratio * source.view.kv_copy_time_s(r.kv_tokens):
                continue
            for dest in destinations[:4]:
                view = dest.view
                room = view.kv_capacity_tokens - view.kv_used_tokens - view.kv_pending_tokens
                if r.kv_tokens + view.num_running + 2 > room:
                    continue
                if dest.load + delta >= source.load - delta - self.imbalance / 2:
                    break  # destinations are sorted: no later one does better
                source.load -= delta
                dest.load += delta
                used.update((source.index, dest.index))
                self._last_moved_s[r.request_id] = now_s
                return Migration(r.request_id, source.index, dest.index)
        return None
