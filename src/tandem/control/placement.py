"""Decode placement policies: round-robin, least-KV-load and least-requests.

All break ties by the lowest instance index so that runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.control.policies import _PLACEMENT, DecodePlacementPolicy, register
from tandem.control.views import DecodeInstanceView, NewRequestView


@register(_PLACEMENT, "round-robin")
class RoundRobinPlacement(DecodePlacementPolicy):
    """Instances in turn, ignoring load (the static assignment ARES improves on)."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        index = self._next % len(instances)
        self._next = index + 1
        return index


def kv_load(instance: DecodeInstanceView) -> float:
    """Share of KV capacity used or promised to requests that have not joined yet."""
    return (instance.kv_used_tokens + instance.kv_pending_tokens) / instance.kv_capacity_tokens


@register(_PLACEMENT, "least-kv")
class LeastKVPlacement(DecodePlacementPolicy):
    """The instance with the smallest current KV load (current-load balancing)."""

    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        loads = [kv_load(d) for d in instances]
        return loads.index(min(loads))


@register(_PLACEMENT, "least-requests")
class LeastRequestsPlacement(DecodePlacementPolicy):
    """The instance with the fewest running plus pending requests."""

    def choose(self, request: NewRequestView, instances: Sequence[DecodeInstanceView]) -> int:
        counts = [d.num_running + d.num_pending for d in instances]
        return counts.index(min(counts))
