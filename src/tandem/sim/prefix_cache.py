"""Prefix caching on a simulated prefill instance (as vLLM's automatic prefix caching and
SGLang's radix cache): KV blocks of prompts already prefilled stay on the instance, keyed by
their block hash, and a later prompt that starts with the same blocks skips computing them.

- A request carries one hash per block of ``block_tokens`` prompt tokens (Mooncake traces'
  ``hash_ids``, blocks of 512 tokens; the last block may be partial). A request without
  hashes never hits and is never cached.
- A hit is a *prefix*: the consecutive blocks from the first that the instance holds. The
  cached tokens are ``min(blocks * block_tokens, prompt_tokens - 1)``: at least one token is
  always computed (it produces the first output token, as in vLLM).
- Capacity is ``capacity_tokens // block_tokens`` blocks per instance, evicted least recently
  used (a hit and an insertion both make a block the most recent). Within one request the
  later blocks count as older, so eviction takes a prefix's tail before its head (a head-less
  tail could never hit), as vLLM frees a sequence's blocks tail first.
- A request's blocks enter the cache when its prefill completes (the iteration computing its
  last token), so requests in the same batch or iteration do not hit each other's blocks.

Speed (results unchanged): the simulator knows the whole workload, so it tells ``insert`` how
many of a request's leading blocks a later request carries (``live_prefix_blocks``). The blocks
past those can never be looked up again; they still occupy capacity and age like any block, but
are held as one anonymous entry weighing their count, not one entry each. Held blocks and their
LRU order are the same as with every block named, so every lookup answers the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

#: Tokens per hash in Mooncake traces' ``hash_ids``.
DEFAULT_BLOCK_TOKENS = 512


class _Anonymous:
    """The key of a run of blocks no later request can look up (see the module doc)."""

    __slots__ = ()


class PrefixCache:
    """An LRU set of block hashes with a capacity in blocks."""

    __slots__ = ("capacity_blocks", "block_tokens", "_blocks", "_held")

    def __init__(self, capacity_tokens: int, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> None:
        self.block_tokens = block_tokens
        self.capacity_blocks = capacity_tokens // block_tokens
        #: Least recently used first: a block hash -> 1, or an anonymous run -> its blocks.
        self._blocks: OrderedDict[object, int] = OrderedDict()
        self._held = 0

    def __len__(self) -> int:
        """Blocks held, named or not."""
        return self._held

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._blocks

    def prefix_blocks(self, hashes: Sequence[int] | None) -> int:
        """How many blocks from the first of ``hashes`` are held (no LRU update)."""
        if not hashes:
            return 0
        blocks = self._blocks
        n = 0
        for h in hashes:
            if h not in blocks:
                break
            n += 1
        return n

    def lookup(self, hashes: Sequence[int] | None, prompt_tokens: int) -> int:
        """Cached prompt tokens of a request starting its prefill now; the hit blocks become
        the most recently used."""
        n = self.prefix_blocks(hashes)
        if n == 0:
            return 0
        assert hashes is not None
        move = self._blocks.move_to_end
        for h in hashes[n - 1 :: -1]:
            move(h)
        return min(n * self.block_tokens, prompt_tokens - 1)

    def insert(self, hashes: Sequence[int] | None, live_blocks: int | None = None) -> None:
        """A request's prefill completed: its blocks are held (its first block the most recent);
        the least recently used are evicted past the capacity. ``live_blocks``: how many of
        its leading blocks a later request may look up (``None``: all); the rest are held as
        one anonymous run, where they would be."""
        if not hashes or self.capacity_blocks <= 0:
            return
        blocks = self._blocks
        held = self._held
        live = len(hashes) if live_blocks is None else live_blocks
        if live < len(hashes):
            dead = set(hashes[live:])  # a hash repeated within a prompt is one block
            if not blocks.keys().isdisjoint(dead):
                pop = blocks.pop
                for h in dead:
                    held -= pop(h, 0)
            blocks[_Anonymous()] = len(dead)
            held += len(dead)
        move = blocks.move_to_end
        for h in hashes[live - 1 :: -1] if live else ():
            if h in blocks:
                move(h)
            else:
                blocks[h] = 1
                held += 1
        excess = held - self.capacity_blocks
        if excess > 0:
            popitem = blocks.popitem
            while excess > 0:
                key, weight = popitem(last=False)
                if weight > excess:  # an anonymous run, partly evicted: its rest stays oldest
                    blocks[key] = weight - excess
                    move(key, last=False)
                    weight = excess
                excess -= weight
                held -= weight
        self._held = held


def live_prefix_blocks(hash_lists: Sequence[Sequence[int] | None]) -> list[int]:
    """For requests in the order they reach the prefill instances (arrival order: each
    instance serves its queue first come first served), how many leading blocks of each a
    later request carries: 1 + the position of its last block found in a later request, 0 if
    none. Blocks past that can only age in a cache (``PrefixCache.insert``'s ``live_blocks``)."""
    later: set[int] = set()
    out = [0] * len(hash_lists)
    for i in range(len(hash_lists) - 1, -1, -1):
        hashes = hash_lists[i]
        if not hashes:
            continue
        n = len(hashes)
        for h in reversed(hashes):
            if h in later:
                break
            n -= 1
        out[i] = n
        later.update(hashes)
    return out
