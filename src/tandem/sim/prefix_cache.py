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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

#: Tokens per hash in Mooncake traces' ``hash_ids``.
DEFAULT_BLOCK_TOKENS = 512


class PrefixCache:
    """An LRU set of block hashes with a capacity in blocks."""

    __slots__ = ("capacity_blocks", "block_tokens", "_blocks")

    def __init__(self, capacity_tokens: int, block_tokens: int = DEFAULT_BLOCK_TOKENS) -> None:
        self.block_tokens = block_tokens
        self.capacity_blocks = capacity_tokens // block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

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
        for h in reversed(hashes[:n]):
            self._blocks.move_to_end(h)
        return min(n * self.block_tokens, prompt_tokens - 1)

    def insert(self, hashes: Sequence[int] | None) -> None:
        """A request's prefill completed: its blocks are held (its first block the most recent);
        the least recently used are evicted past the capacity."""
        if not hashes or self.capacity_blocks <= 0:
            return
        blocks = self._blocks
        for h in reversed(hashes):
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)
