"""Prefill dispatch policies: round-robin, least-queued-tokens and cache-aware."""

from __future__ import annotations

from collections.abc import Sequence

from tandem.control.policies import _DISPATCH, PrefillDispatchPolicy, register
from tandem.control.views import NewRequestView, PrefillInstanceView


@register(_DISPATCH, "round-robin")
class RoundRobinDispatch(PrefillDispatchPolicy):
    """Instances in turn, ignoring load."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, request: NewRequestView, instances: Sequence[PrefillInstanceView]) -> int:
        index = self._next % len(instances)
        self._next = index + 1
        return index


@register(_DISPATCH, "least-queued-tokens")
class LeastQueuedTokensDispatch(PrefillDispatchPolicy):
    """The instance with the fewest prompt tokens queued or in progress (lowest index on ties)."""

    def choose(self, request: NewRequestView, instances: Sequence[PrefillInstanceView]) -> int:
        queued = [p.queued_tokens for p in instances]
        return queued.index(min(queued))


@register(_DISPATCH, "cache-aware")
class CacheAwareDispatch(PrefillDispatchPolicy):
    """The instance holding the longest prefix of the request's prompt blocks; ties (such as
    no instance holding any) by fewest queued tokens, then lowest index.

    Reads ``cached_prefix_blocks(prefix_hashes)`` of an instance that has it (the simulator's
    prefill instances with a prefix cache); an instance without it counts as holding none, so
    without prefix caching or block hashes this is ``least-queued-tokens``."""

    def choose(self, request: NewRequestView, instances: Sequence[PrefillInstanceView]) -> int:
        hashes = request.prefix_hashes
        best = 0
        best_key: tuple[int, int] | None = None
        for i, p in enumerate(instances):
            held = getattr(p, "cached_prefix_blocks", None)
            blocks = held(hashes) if hashes and held is not None else 0
            key = (-blocks, p.queued_tokens)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best
