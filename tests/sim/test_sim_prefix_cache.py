"""Prefix caching in the simulated prefill instances (issue 18 item 2): requests carrying block
hashes skip the cached prefix of their prompt; LRU over a capacity; off by default; the
``cache-aware`` dispatch policy prefers the instance holding the longest prefix."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest

from sim_helpers import busy_workload, config
from tandem.control.dispatch import CacheAwareDispatch
from tandem.control.policies import make_dispatch, policy_names
from tandem.control.views import NewRequestView
from tandem.errors import ConfigError
from tandem.sim import simulate
from tandem.sim.prefix_cache import PrefixCache, live_prefix_blocks
from tandem.workload.request import Request, Workload

B = 512


def _chunk_s(chunks: list[tuple[int, int]]) -> float:
    """The test cost model's iteration: a + b*sum(k) + c*sum((p+k)^2 - p^2)."""
    return 0.01 + 1e-4 * sum(k for _, k in chunks) + 1e-8 * sum(k * (k + 2 * p) for p, k in chunks)


def _workload(rows: list[tuple[float, int, tuple[int, ...] | None]]) -> Workload:
    return Workload(
        "hashed",
        tuple(Request(i, a, p, 1, prefix_hashes=h) for i, (a, p, h) in enumerate(rows)),
    )


def test_a_repeated_prefix_hits_and_costs_less_prefill() -> None:
    """The second request shares 2 of its 3 blocks: 1024 tokens are skipped, its prefill is
    priced as 512 new tokens on 1024 computed, and the hit rate says so."""
    w = _workload([(0.0, 3 * B, (1, 2, 3)), (10.0, 3 * B, (1, 2, 4))])
    r = simulate(w, config(prefix_cache_tokens=10 * B))
    assert r.cached_tokens is not None and r.cached_tokens.tolist() == [0, 2 * B]
    ttft = r.first_token_s - r.arrival_s
    assert ttft[0] == pytest.approx(_chunk_s([(0, 3 * B)]))
    assert ttft[1] == pytest.approx(_chunk_s([(2 * B, B)]))
    assert ttft[1] < ttft[0] / 2
    m = r.metrics()
    assert m["prefix_cached_tokens"] == 2 * B
    assert m["prefix_cache_hit_rate"] == pytest.approx(2 * B / (6 * B))
    assert m["prefix_cache_request_hit_rate"] == pytest.approx(0.5)
    # A full hit still computes one token (the first output token comes from it).
    r = simulate(_workload([(0.0, B, (7,)), (10.0, B, (7,))]), config(prefix_cache_tokens=B))
    assert r.cached_tokens is not None and r.cached_tokens.tolist() == [0, B - 1]


def test_chunked_prefill_skips_the_cached_prefix_too() -> None:
    w = _workload([(0.0, 3 * B, (1, 2, 3)), (10.0, 3 * B, (1, 2, 4))])
    r = simulate(w, config(prefix_cache_tokens=10 * B, chunk_tokens=B))
    assert r.cached_tokens is not None and r.cached_tokens.tolist() == [0, 2 * B]
    assert (r.first_token_s - r.arrival_s)[1] == pytest.approx(_chunk_s([(2 * B, B)]))


def test_only_a_prefix_hits() -> None:
    """Blocks held after a miss do not count: the hit is consecutive from the first block."""
    cache = PrefixCache(10 * B)
    cache.insert((1, 2, 3))
    assert cache.prefix_blocks((1, 2, 3)) == 3
    assert cache.prefix_blocks((9, 2, 3)) == 0
    assert cache.prefix_blocks((1, 9, 3)) == 1
    assert cache.prefix_blocks(None) == 0


def test_lru_eviction() -> None:
    """Capacity 4 blocks: the least recently used go first, a prefix's tail before its head;
    a hit refreshes the blocks it used."""
    cache = PrefixCache(4 * B + 100)
    assert cache.capacity_blocks == 4
    cache.insert((1, 2))
    cache.insert((3, 4))
    assert cache.lookup((1, 2), 2 * B) == 2 * B - 1  # refreshes 1 and 2
    cache.insert((5,))  # evicts the LRU block: 4 (3's tail), not 1 or 2
    assert 4 not in cache and 3 in cache and len(cache) == 4
    assert cache.prefix_blocks((3, 4)) == 1
    cache.insert((6, 7))  # evicts 3, then 2 (the tail of 1,2)
    assert [h in cache for h in (1, 2, 3, 5, 6, 7)] == [True, False, False, True, True, True]
    # In the simulator: a third prompt evicts the first one's blocks from a 2-block cache.
    w = _workload([(0.0, 2 * B, (1, 2)), (10.0, 2 * B, (3, 4)), (20.0, 2 * B, (1, 2))])
    r = simulate(w, config(prefix_cache_tokens=2 * B))
    assert r.cached_tokens is not None and r.cached_tokens.tolist() == [0, 0, 0]
    r = simulate(w, config(prefix_cache_tokens=4 * B))
    assert r.cached_tokens is not None and r.cached_tokens.tolist() == [0, 0, 2 * B - 1]


def test_off_is_unchanged() -> None:
    """Off (the default), hashes are ignored and results equal a run without them; a cache
    without hashes never hits and changes nothing either."""
    base = busy_workload(200)
    hashed = Workload(
        base.name,
        tuple(replace(r, prefix_hashes=(1, 2, 3)) for r in base.requests),
    )
    plain = simulate(base, config())
    off = simulate(hashed, config())
    assert off.cached_tokens is None and "prefix_cache_hit_rate" not in off.metrics()
    np.testing.assert_array_equal(plain.first_token_s, off.first_token_s)
    np.testing.assert_array_equal(plain.finish_s, off.finish_s)
    no_hashes = simulate(base, config(prefix_cache_tokens=100_000))
    assert no_hashes.metrics()["prefix_cache_hit_rate"] == 0.0
    np.testing.assert_allclose(plain.first_token_s, no_hashes.first_token_s)
    with pytest.raises(ConfigError):
        config(prefix_cache_tokens=-1)


class _Instance:
    def __init__(self, queued: int, held: tuple[int, ...]) -> None:
        self.instance_id = 0
        self.queued_tokens = queued
        self.num_queued = 1
        self.cache = PrefixCache(100 * B)
        self.cache.insert(held)

    def cached_prefix_blocks(self, hashes: tuple[int, ...] | None) -> int:
        return self.cache.prefix_blocks(hashes)


def test_cache_aware_dispatch_chooses_the_holder() -> None:
    assert "cache-aware" in policy_names()["dispatch"]
    policy = make_dispatch("cache-aware")
    assert isinstance(policy, CacheAwareDispatch)
    instances = [_Instance(0, ()), _Instance(5000, (1, 2)), _Instance(9000, (1, 2, 3))]
    view = NewRequestView(0, 0.0, 3 * B, prefix_hashes=(1, 2, 3, 4))
    assert policy.choose(view, instances) == 2  # the longest prefix, however loaded
    view = NewRequestView(0, 0.0, 3 * B, prefix_hashes=(1, 2, 9))
    assert policy.choose(view, instances) == 1  # tie on 2 blocks: fewer queued tokens
    assert policy.choose(NewRequestView(0, 0.0, 3 * B), instances) == 0  # no hashes
    # In the simulator: the third request goes to the instance that prefilled the first,
    # although the second (no hashes, least queued tokens) keeps it busy.
    w = _workload([(0.0, 4 * B, (1, 2, 3, 4)), (1.0, 8000, None), (1.01, 4 * B, (1, 2, 3, 5))])
    for dispatch, expected in (("cache-aware", 3 * B), ("least-queued-tokens", 0)):
        c = config(num_prefill=2, prefix_cache_tokens=100 * B, dispatch=dispatch)
        r = simulate(w, c)
        assert r.cached_tokens is not None and r.cached_tokens[2] == expected


class _PlainLRU:
    """The cache as first written: every block named, one OrderedDict entry each (the
    reference the anonymous runs of blocks no later request carries must match)."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity_blocks = capacity_blocks
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def prefix_blocks(self, hashes: tuple[int, ...]) -> int:
        n = 0
        for h in hashes:
            if h not in self.blocks:
                break
            n += 1
        return n

    def lookup(self, hashes: tuple[int, ...], prompt_tokens: int) -> int:
        n = self.prefix_blocks(hashes)
        for h in reversed(hashes[:n]):
            self.blocks.move_to_end(h)
        return min(n * B, prompt_tokens - 1) if n else 0

    def insert(self, hashes: tuple[int, ...]) -> None:
        for h in reversed(hashes):
            if h in self.blocks:
                self.blocks.move_to_end(h)
            else:
                self.blocks[h] = None
        while len(self.blocks) > self.capacity_blocks:
            self.blocks.popitem(last=False)


def _conversations(rng: np.random.Generator, n: int) -> list[tuple[int, ...]]:
    """Prompts as multi-turn chats make them: a turn repeats an earlier turn's blocks and adds
    its own; now and then a block repeated within a prompt or a prompt of shared blocks."""
    prompts: list[tuple[int, ...]] = []
    fresh = iter(range(1000, 10**6))
    for _ in range(n):
        roll = rng.random()
        if prompts and roll < 0.6:
            base = prompts[int(rng.integers(len(prompts)))]
            prompt = base[: int(rng.integers(1, len(base) + 1))]
        else:
            prompt = ()
        prompt += tuple(next(fresh) for _ in range(int(rng.integers(0 if prompt else 1, 6))))
        if roll > 0.95:
            prompt += prompt[:1]  # a block repeated within a prompt
        prompts.append(prompt)
    return prompts


@pytest.mark.parametrize("capacity", [1, 3, 8, 40, 10_000])
def test_unnamed_dead_blocks_change_nothing(capacity: int) -> None:
    """Holding the blocks no later request carries as one anonymous run (the speed-up) gives
    the same hits and the same held blocks as naming every block, through evictions, FCFS
    batches that look up before they insert, and repeated hashes."""
    rng = np.random.default_rng(capacity)
    prompts = _conversations(rng, 400)
    live = live_prefix_blocks(prompts)
    fast, plain = PrefixCache(capacity * B), _PlainLRU(capacity)
    assert sum(live) < sum(len(p) for p in prompts)  # some blocks are dead: the fast path runs
    i = 0
    while i < len(prompts):
        batch = range(i, min(len(prompts), i + int(rng.integers(1, 4))))
        for j in batch:
            tokens = len(prompts[j]) * B
            assert fast.lookup(prompts[j], tokens) == plain.lookup(prompts[j], tokens)
        for j in batch:
            fast.insert(prompts[j], live[j])
            plain.insert(prompts[j])
        i = batch.stop
        assert len(fast) == len(plain.blocks)
        for later in prompts[i:]:  # every block a later request may ask for
            for h in later:
                assert (h in fast) == (h in plain.blocks)


def test_unnamed_dead_blocks_change_no_simulated_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator with and without the speed-up (every block named): identical runs."""
    import tandem.sim.cluster as cluster

    rng = np.random.default_rng(7)
    prompts = _conversations(rng, 300)
    w = Workload(
        "chats",
        tuple(
            Request(i, 0.05 * i, len(p) * B - int(rng.integers(0, 300)), 20, prefix_hashes=p)
            for i, p in enumerate(prompts)
        ),
    )
    for extra in ({}, {"chunk_tokens": 700}, {"dispatch": "cache-aware"}):
        c = config(num_prefill=2, prefix_cache_tokens=12 * B, **extra)
        fast = simulate(w, c)
        with monkeypatch.context() as m:
            m.setattr(cluster, "live_prefix_blocks", lambda lists: [None] * len(lists))
            plain = simulate(w, c)
        assert fast.cached_tokens is not None and fast.cached_tokens.sum() > 0
        np.testing.assert_array_equal(fast.cached_tokens, plain.cached_tokens)
        np.testing.assert_array_equal(fast.first_token_s, plain.first_token_s)
        np.testing.assert_array_equal(fast.finish_s, plain.finish_s)


def test_cache_aware_spreads_requests_sharing_only_a_first_block() -> None:
    """Every prompt starts with one shared block (a system prompt) and goes on with its own:
    longest-prefix-first sent them all to the instance holding that block (issue 18 item 2's
    mooncake-conv run); with SGLang's match threshold they go to the least loaded, while a
    prompt mostly cached still goes to its holder, unless the load is imbalanced."""
    rows = [(0.05 * i, 4 * B, (1, 100 + 3 * i, 101 + 3 * i, 102 + 3 * i)) for i in range(12)]
    c = config(num_prefill=3, prefix_cache_tokens=100 * B, dispatch="cache-aware")
    r = simulate(_workload([(0.0, B, (1,)), *((a + 1.0, p, h) for a, p, h in rows)]), c)
    busy = np.array(r.prefill_busy_s)
    assert (busy > 0).all() and busy.max() < 0.6 * busy.sum()  # the old policy: all on one
    instances = [_Instance(0, (1,)), _Instance(4 * B, (1, 2, 3))]
    policy = CacheAwareDispatch()
    assert policy.choose(NewRequestView(0, 0.0, 4 * B, prefix_hashes=(1, 7, 8, 9)), instances) == 0
    assert policy.choose(NewRequestView(0, 0.0, 4 * B, prefix_hashes=(1, 2, 3, 9)), instances) == 1
    instances[1].num_queued = 40  # 39 more requests than instance 0: imbalanced
    assert policy.choose(NewRequestView(0, 0.0, 4 * B, prefix_hashes=(1, 2, 3, 9)), instances) == 0
