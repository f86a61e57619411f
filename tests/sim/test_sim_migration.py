"""Live migration in the simulator: staged copy, reservation first, abort, conservation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from sim_helpers import busy_workload, config
from tandem.control.policies import DecodeRescheduler, Migration
from tandem.control.views import DecodeInstanceView
from tandem.sim import simulate
from tandem.workload.request import workload_from_arrays


class Scripted(DecodeRescheduler):
    """Asks for the given migrations at the first tick at or after each time."""

    interval_s = 0.05

    def __init__(self, plan: list[tuple[float, Migration]]) -> None:
        self._plan = sorted(plan, key=lambda p: p[0])

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        due = [m for t, m in self._plan if t <= now_s]
        self._plan = [(t, m) for t, m in self._plan if t > now_s]
        return due


class Shuffler(DecodeRescheduler):
    """Moves the first running request of the fullest instance to the emptiest, every tick."""

    interval_s = 0.02

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        full = max(range(len(instances)), key=lambda i: instances[i].num_running)
        empty = min(range(len(instances)), key=lambda i: instances[i].num_running)
        running = instances[full].running()
        if full == empty or not running:
            return ()
        return [Migration(running[0].request_id, full, empty)]


def test_migrated_request_finishes_on_the_destination_with_a_pause() -> None:
    w = workload_from_arrays("m", [0.0], [200], [400])
    baseline = simulate(w, config(num_decode=2))
    moved = simulate(w, config(num_decode=2), rescheduler=Scripted([(0.5, Migration(0, 0, 1))]))
    m = moved.metrics()
    assert m["num_migrations"] == 1 and moved.num_migrations.tolist() == [1]
    assert m["migrated_bytes"] >= (200 + 1) * 1000
    assert m["migration_pause_s"] > 0
    # Same tokens, later finish by roughly the pause (one instance alone is as fast as the other).
    assert moved.generated_tokens.tolist() == [400]
    assert moved.finish_s[0] > baseline.finish_s[0]
    assert moved.finish_s[0] - baseline.finish_s[0] < 0.05


def test_migration_aborts_when_the_destination_lacks_room() -> None:
    # D1 is filled by request 1; request 0 (on D0) cannot fit beside it.
    w = workload_from_arrays("m", [0.0, 0.0], [700, 700], [200, 200])
    r = simulate(
        w,
        config(kv_capacity=1000, num_decode=2),
        rescheduler=Scripted([(0.3, Migration(0, 0, 1))]),
    )
    m = r.metrics()
    assert m["num_migrations"] == 0 and m["num_migrations_aborted"] == 1
    assert m["num_completed"] == 2


def test_migrating_a_finished_or_unknown_request_is_refused_not_crashing() -> None:
    # Request 0 is done long before 1 s; request 1 keeps the run (and the ticks) going.
    w = workload_from_arrays("m", [0.0, 0.0], [100, 100], [5, 2000])
    plan = [(1.0, Migration(0, 0, 1)), (1.0, Migration(7, 0, 1)), (1.0, Migration(1, 1, 1))]
    r = simulate(w, config(num_decode=2), rescheduler=Scripted(plan))
    assert r.metrics()["num_migrations_aborted"] == 3
    assert r.metrics()["num_completed"] == 2


@pytest.mark.parametrize("exact", [False, True])
def test_conservation_with_many_migrations(exact: bool) -> None:
    w = busy_workload(n=300)
    r = simulate(
        w,
        config(kv_capacity=9000, num_decode=3, exact=exact, record_timeline=True),
        rescheduler=Shuffler(),
    )
    m = r.metrics()
    assert m["num_migrations"] > 10
    assert m["num_completed"] + m["num_rejected"] == len(w)
    done = r.completed
    assert np.array_equal(r.generated_tokens[done], r.output_tokens[done])
    assert r.decode_timelines is not None
    for timeline in r.decode_timelines:
        kv = np.array([kv for _, _, kv in timeline])
        assert kv.min() >= 0 and kv.max() <= 9000
        assert timeline[-1][2] == 0


def test_fast_forward_equals_exact_with_migrations() -> None:
    w = busy_workload(n=200)
    kw = {"kv_capacity": 9000, "num_decode": 3}
    fast = simulate(w, config(**kw), rescheduler=Shuffler())
    exact = simulate(w, config(exact=True, **kw), rescheduler=Shuffler())
    assert fast.metrics()["num_migrations"] == exact.metrics()["num_migrations"] > 0
    np.testing.assert_allclose(fast.finish_s, exact.finish_s, rtol=0, atol=1e-9)
