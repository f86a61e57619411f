"""Step scripts for the ARES and Llumnix-style reschedulers and the ARES placement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sim_helpers import busy_workload, cost
from tandem.control import make_placement, make_rescheduler
from tandem.control.ares import AresRescheduler, projected_peak_kv
from tandem.control.policies import DecodeRescheduler, Migration
from tandem.control.views import (
    DecodeInstanceView,
    NewRequestView,
    RunningRequestView,
    WaitingRequestView,
)
from tandem.sim import ClusterConfig, simulate


@dataclass
class D:
    instance_id: int
    requests: list[RunningRequestView] = field(default_factory=list)
    kv_pending_tokens: int = 0
    num_pending: int = 0
    kv_capacity_tokens: int = 10_000
    max_batch_size: int = 64
    num_preemptions: int = 0
    queue: list[WaitingRequestView] = field(default_factory=list)

    @property
    def kv_used_tokens(self) -> int:
        return sum(r.kv_tokens for r in self.requests)

    @property
    def kv_waiting_tokens(self) -> int:
        return sum(w.kv_tokens for w in self.queue)

    @property
    def num_running(self) -> int:
        return len(self.requests)

    def running(self) -> list[RunningRequestView]:
        return self.requests

    def waiting(self) -> list[WaitingRequestView]:
        return self.queue

    def projected_kv_tokens(self, horizon_tokens: int) -> float | None:
        rem = [r.predicted_remaining_tokens for r in self.requests]
        if any(v is None for v in rem):
            return None
        return self.kv_used_tokens + sum(min(v or 0.0, horizon_tokens) for v in rem)

    def step_time_s(self) -> float:
        return 0.02 if self.requests else 0.0

    def kv_copy_time_s(self, kv_tokens: int) -> float:
        return 1e-4 + kv_tokens * 1e-6


def req(rid: int, kv: int, remaining: float | None, generated: int = 100) -> RunningRequestView:
    return RunningRequestView(rid, kv - generated, generated, kv, remaining)


def test_projected_peak_counts_growth_until_each_request_ends() -> None:
    # Two requests: kv 100 ending in 10 steps, kv 200 ending in 50 steps.
    # Just before step 10: 110 + 210 = 320; just before step 50 only the second: 250.
    assert projected_peak_kv([(100, 10), (200, 50)], 0, 1000) == 320
    # A horizon of 5 steps caps the growth: 105 + 205.
    assert projected_peak_kv([(100, 10), (200, 50)], 0, 5) == 310
    assert projected_peak_kv([], 42, 100) == 42


def test_projected_overflow_moves_the_most_future_per_byte_to_the_emptiest() -> None:
    # 7,900 tokens now, but three requests keep growing for 3,000 tokens: the peak overflows.
    heavy = D(0, [req(1, 2000, 3000), req(2, 3000, 3000), req(3, 2500, 100), req(4, 400, 3000)])
    light = D(1, [req(5, 500, 200)])
    moves = AresRescheduler(horizon_tokens=4096).plan(10.0, [heavy, light])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(4, 0, 1)]
    # Within a short horizon the same instance does not overflow: nothing moves.
    assert AresRescheduler(horizon_tokens=512).plan(10.0, [heavy, light]) == []


def test_a_request_about_to_finish_is_never_chosen() -> None:
    # Peak 9,990 + 2 x 50 > 10,000, but both requests end within 64 tokens.
    heavy = D(0, [req(1, 5000, 60), req(2, 4990, 50)])
    light = D(1)
    assert AresRescheduler(min_remaining_tokens=64).plan(0.0, [heavy, light]) == []
    # With a lower bar one moves (request 2: moving request 1 would flip the imbalance).
    moves = AresRescheduler(min_remaining_tokens=32, benefit_ratio=0.0).plan(0.0, [heavy, light])
    assert [m.request_id for m in moves] == [2]


def test_no_migration_when_the_destination_lacks_room() -> None:
    heavy = D(0, [req(1, 6000, 3000), req(2, 3000, 3000)])
    full = D(1, [req(3, 2000, 10)], kv_pending_tokens=7_500)
    assert AresRescheduler().plan(0.0, [heavy, full]) == []
    roomy = D(1, [req(3, 2000, 10)])
    assert [m.destination for m in AresRescheduler().plan(0.0, [heavy, roomy])] == [1]


def test_when_everyone_is_projected_over_capacity_only_an_instance_about_to_run_out_sheds() -> None:
    # Instance 1 is projected at (5,000 + 50 + 2,300 waiting) / 10,000 = 0.735: a request of
    # projected size 0.30 would take it over the watermark, so no ordinary move passes.
    # Instance 0 has memory for 200 / 5 = 40 more steps (< 64): it sheds anyway, because
    # instance 1 keeps more free steps after the move ((5,000 - 1,960) / 2 = 1,520 against
    # (200 + 1,960) / 4 = 540) and its running batch with the request peaks at 7,060 tokens.
    source = D(0, [req(i, 1960, 3000) for i in range(1, 6)])
    queue = [WaitingRequestView(10, 2300, 1, 500.0)]
    dest = D(1, [req(9, 5000, 50)], kv_pending_tokens=2300, num_pending=1, queue=queue)
    moves = AresRescheduler().plan(0.0, [source, dest])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(1, 0, 1)]
    # With 1,000 tokens free (200 steps) instance 0 is not in danger now: nothing moves.
    calm = D(0, [req(i, 1800, 3000) for i in range(1, 6)])
    assert AresRescheduler().plan(0.0, [calm, dest]) == []
    # Nor does it shed into an instance whose running batch would overflow with the request.
    growing = D(1, [req(9, 6000, 3000)], kv_pending_tokens=2300, num_pending=1, queue=queue)
    assert AresRescheduler().plan(0.0, [source, growing]) == []


def test_an_instance_about_to_run_out_sheds_even_when_predictions_say_it_fits() -> None:
    # 40 requests hold 9,800 of 10,000 tokens: 5 steps of growth left. 39 were predicted to
    # have ended already (predictions ran short), so the projected peak is 9,800 and fits;
    # the instance is still about to preempt, and sheds the one request with a future.
    crowded = D(0, [req(i, 245, 0.0) for i in range(1, 40)] + [req(40, 245, 100.0)])
    empty = D(1)
    moves = AresRescheduler().plan(0.0, [crowded, empty])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(40, 0, 1)]
    assert AresRescheduler(urgent_steps=0).plan(0.0, [crowded, empty]) == []


def test_an_instance_about_to_run_out_sheds_its_largest_request() -> None:
    # 9,800 of 10,000 tokens held: 200 free, fewer than 64 steps of 31 requests' growth. By
    # growth per byte a 250-token request would go (1,024 / 250 against 1,024 / 2,300), but
    # the memory runs out now, and only the 2,300-token one frees enough of it in one move.
    crowded = D(0, [req(i, 250, 2000.0) for i in range(1, 31)] + [req(31, 2300, 2000.0)])
    empty = D(1)
    moves = AresRescheduler().plan(0.0, [crowded, empty])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(31, 0, 1)]
    # Not in danger now (projected overflow only): the most growth per byte goes.
    moves = AresRescheduler(urgent_steps=0).plan(0.0, [crowded, empty])
    assert [m.request_id for m in moves] == [1]


def test_a_request_stuck_behind_a_full_instance_is_replaced_where_memory_is_free() -> None:
    # Instance 0 has 500 tokens free but two requests of 800 wait there: both are stuck.
    stuck = [WaitingRequestView(7, 800, 1, 100.0), WaitingRequestView(8, 800, 1, 100.0)]
    full = D(0, [req(1, 9_500, 50)], kv_pending_tokens=1_600, num_pending=2, queue=stuck)
    free = D(1, [req(2, 1000, 50)])
    moves = AresRescheduler().plan(0.0, [full, free])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(7, 0, 1), (8, 0, 1)]
    # If the other instance has no room either, the queue keeps its order and stays.
    busy = D(1, [req(2, 9_900, 50)])
    assert AresRescheduler().plan(0.0, [full, busy]) == []


def test_no_ping_pong_over_many_ticks() -> None:
    policy = AresRescheduler(cooldown_s=5.0)
    a = D(0, [req(1, 3000, 3000), req(2, 3000, 3000), req(3, 2000, 2000)])
    b = D(1, [req(4, 500, 500)])
    moved: list[int] = []
    for tick in range(40):
        for m in policy.plan(tick * 0.5, [a, b]):
            moved.append(m.request_id)
            src, dst = (a, b) if m.source == 0 else (b, a)
            r = next(x for x in src.requests if x.request_id == m.request_id)
            src.requests.remove(r)
            dst.requests.append(r)
    # Each request moves at most once per cooldown (5 s = 10 ticks) and the pair settles.
    assert len(moved) <= 2
    assert all(moved.count(rid) == 1 for rid in moved)


def test_ares_placement_avoids_an_instance_whose_requests_will_grow() -> None:
    growing = D(0, [req(1, 1000, 5000)])
    ending = D(1, [req(2, 1500, 5)])
    new = NewRequestView(9, 0.0, 100, predicted_output_tokens=500)
    assert make_placement("ares").choose(new, [growing, ending]) == 1
    assert make_placement("least-kv").choose(new, [growing, ending]) == 0


def test_llumnix_moves_the_smallest_request_from_a_nearly_full_instance() -> None:
    # Ten requests leave 10 free tokens: freeness 1 step < 3.
    full = D(0, [req(i, 1000, None) for i in range(1, 10)] + [req(10, 990, None)])
    empty = D(1, [req(11, 100, None)])
    moves = make_rescheduler("llumnix").plan(0.0, [full, empty])
    assert [(m.request_id, m.source, m.destination) for m in moves] == [(10, 0, 1)]


def test_llumnix_does_not_flip_the_imbalance() -> None:
    a = D(0, [req(1, 9_990, None)])
    b = D(1, [req(2, 9_000, None)])
    assert make_rescheduler("llumnix").plan(0.0, [a, b]) == []


class Idle(DecodeRescheduler):
    """Ticks often and reads every view, but never migrates."""

    interval_s = 0.05

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        for view in instances:
            view.running()
        return ()


def test_noop_rescheduler_equals_placement_only_run_exactly() -> None:
    w = busy_workload(n=300)
    c = cost(8000)
    config = ClusterConfig(1, 3, c, c, placement="ares", prediction="noise:0.5")
    a = simulate(w, config)
    b = simulate(w, config, rescheduler=Idle())
    assert np.array_equal(a.finish_s, b.finish_s)
    assert np.array_equal(a.first_token_s, b.first_token_s)


def test_conservation_with_the_ares_rescheduler() -> None:
    w = busy_workload(n=400, rate=60.0)
    c = cost(7000)
    r = simulate(
        w,
        ClusterConfig(
            1, 3, c, c, placement="round-robin", rescheduler="ares", prediction="noise:0.5"
        ),
    )
    m = r.metrics()
    assert m["num_completed"] + m["num_rejected"] == len(w)
    done = r.completed
    assert np.array_equal(r.generated_tokens[done], r.output_tokens[done])
