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
    """SGLang router's ``cache_aware`` policy, over the prefill instances' own prefix caches
    (its router approximates them with a radix tree of past requests per worker; the views
    here read the instances' ``cached_prefix_blocks``):

    1. Imbalanced (counting requests queued or in progress, as SGLang counts requests in
       flight: the most loaded has more than ``balance_abs`` over the least, and more than
       ``balance_rel`` times it): the least loaded instance.
    2. Otherwise the instance holding the longest prefix of the request's prompt blocks, when
       that prefix is more than ``cache_threshold`` of its blocks; ties by least load.
    3. Otherwise (a short match, such as only a shared system prompt) the least loaded.

    Least loaded here is fewest queued prompt tokens (a prefill instance's wait), then the
    lowest index. The defaults are SGLang's (``--cache-threshold 0.5``,
    ``--balance-abs-threshold 32``, ``--balance-rel-threshold 1.0001``). An instance without
    ``cached_prefix_blocks`` holds none, so without prefix caching or block hashes this is
    ``least-queued-tokens``. Without step 2's threshold every request sharing only a first
    block (a system prompt) goes to the one instance holding it."""

    def __init__(
        self, cache_threshold: float = 0.5, balance_abs: int = 32, balance_rel: float = 1.0001
    ) -> None:
        self.cache_threshold = cache_threshold
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel

    def choose(self, request: NewRequestView, instances: Sequence[PrefillInstanceView]) -> int:
        queued = [p.queued_tokens for p in instances]
        least = queued.index(min(queued))
        hashes = request.prefix_hashes
        if not hashes:
            return least
        counts = [p.num_queued for p in instances]
        most, fewest = max(counts), min(counts)
        if most - fewest > self.balance_abs and most > self.balance_rel * fewest:
            return least
        best, best_blocks = least, 0
        for i, p in enumerate(instances):
            held = getattr(p, "cached_prefix_blocks", None)
            blocks = held(hashes) if held is not None else 0
            if blocks > best_blocks or (blocks == best_blocks and queued[i] < queued[best]):
                best, best_blocks = i, blocks
        if best_blocks > self.cache_threshold * len(hashes):
            return best
        return least
