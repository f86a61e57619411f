"""Step scripts for the built-in dispatch and placement policies."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tandem.control import make_dispatch, make_placement, make_rescheduler, policy_names
from tandem.control.views import NewRequestView, RunningRequestView
from tandem.errors import UnknownNameError

REQ = NewRequestView(request_id=1, arrival_s=0.0, prompt_tokens=100)


@dataclass
class P:
    instance_id: int
    queued_tokens: int = 0
    num_queued: int = 0


@dataclass
class D:
    instance_id: int
    kv_used_tokens: int = 0
    kv_pending_tokens: int = 0
    num_running: int = 0
    num_pending: int = 0
    kv_capacity_tokens: int = 1000
    max_batch_size: int = 8
    requests: list[RunningRequestView] = field(default_factory=list)

    def running(self) -> list[RunningRequestView]:
        return self.requests


def test_round_robin_dispatch_cycles() -> None:
    policy = make_dispatch("round-robin")
    ps = [P(0), P(1), P(2)]
    assert [policy.choose(REQ, ps) for _ in range(5)] == [0, 1, 2, 0, 1]


def test_least_queued_tokens_picks_the_emptiest_queue_lowest_index_on_ties() -> None:
    policy = make_dispatch("least-queued-tokens")
    assert policy.choose(REQ, [P(0, 500), P(1, 100), P(2, 100)]) == 1


def test_round_robin_placement_ignores_load() -> None:
    policy = make_placement("round-robin")
    ds = [D(0, kv_used_tokens=900), D(1)]
    assert [policy.choose(REQ, ds) for _ in range(3)] == [0, 1, 0]


def test_least_kv_counts_used_and_pending_relative_to_capacity() -> None:
    policy = make_placement("least-kv")
    ds = [
        D(0, kv_used_tokens=300),
        D(1, kv_used_tokens=100, kv_pending_tokens=300),
        D(2, kv_used_tokens=500, kv_capacity_tokens=2000),
    ]
    assert policy.choose(REQ, ds) == 2  # 25% beats 30% and 40%


def test_least_requests_counts_running_and_pending() -> None:
    policy = make_placement("least-requests")
    ds = [
        D(0, num_running=4),
        D(1, num_running=1, num_pending=3),
        D(2, num_running=2, num_pending=1),
    ]
    assert policy.choose(REQ, ds) == 2


def test_no_rescheduler_is_never_ticked_and_never_migrates() -> None:
    policy = make_rescheduler("none")
    assert policy.interval_s is None
    assert list(policy.plan(0.0, [D(0)])) == []


def test_unknown_policy_lists_the_registered_names() -> None:
    with pytest.raises(UnknownNameError, match="least-kv"):
        make_placement("least-load")
    names = policy_names()
    assert {"round-robin", "least-kv", "least-requests"} <= set(names["placement"])
    assert {"round-robin", "least-queued-tokens"} <= set(names["dispatch"])
