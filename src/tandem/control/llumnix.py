"""A Llumnix-style rescheduler: migrate by current KV headroom, without prediction.

After Llumnix (OSDI'24): an instance's *freeness* is how many more decode steps fit in its free
KV, ``(capacity - used - pending) / batch size``. Every ``interval_s``, instances with freeness
under ``min_free_steps`` or with a preemption since the last check become sources; sources,
least free first, pair with the freest destinations; the victim is the running request with the
least KV (the cheapest to move). A pair is accepted only if the freeness gap shrinks without
flipping (the destination stays at least as free as the source after the move).
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.control.policies import _RESCHEDULER, DecodeRescheduler, Migration, register
from tandem.control.views import DecodeInstanceView


def freeness(view: DecodeInstanceView, extra_tokens: int = 0, extra_requests: int = 0) -> float:
    free = view.kv_capacity_tokens - view.kv_used_tokens - view.kv_pending_tokens - extra_tokens
    return free / max(1, view.num_running + extra_requests)


@register(_RESCHEDULER, "llumnix")
class LlumnixRescheduler(DecodeRescheduler):
    """Current-load rebalancing by KV freeness; see the module docstring."""

    def __init__(self, interval_s: float = 0.25, min_free_steps: float = 3.0) -> None:
        self.interval_s = interval_s
        self.min_free_steps = min_free_steps
        self._preemptions: dict[int, int] = {}

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        free = [freeness(v) for v in instances]
        preempted = [
            v.num_preemptions > self._preemptions.get(i, 0) for i, v in enumerate(instances)
        ]
        self._preemptions = {i: v.num_preemptions for i, v in enumerate(instances)}
        sources = sorted(
            (i for i in range(len(instances)) if free[i] < self.min_free_steps or preempted[i]),
            key=lambda i: free[i],
        )
        destinations = sorted(
            (i for i in range(len(instances)) if i not in sources), key=lambda i: -free[i]
        )
        moves = []
        for source, dest in zip(sources, destinations, strict=False):
            running = instances[source].running()
            if not running:
                continue
            victim = min(running, key=lambda r: (r.kv_tokens, r.request_id))
            after_source = freeness(instances[source], -victim.kv_tokens, -1)
            after_dest = freeness(instances[dest], victim.kv_tokens, 1)
            if after_dest >= after_source and after_dest > 0:
                moves.append(Migration(victim.request_id, source, dest))
        return moves
