"""Prefill dispatch policies: round-robin and least-queued-tokens."""

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
