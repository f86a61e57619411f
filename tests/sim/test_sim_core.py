"""Simulator rules: hand-computed timing, conservation, determinism, event order,
fast-forward equals exact, rejection and refusal of impossible configurations."""

from __future__ import annotations

import numpy as np
import pytest

from sim_helpers import busy_workload, config, cost
from tandem.errors import ConfigError, UnknownNameError
from tandem.sim import simulate
from tandem.sim.events import EventQueue, Priority
from tandem.workload.request import workload_from_arrays


def test_single_request_timing_matches_hand_computation() -> None:
    c = cost()
    w = workload_from_arrays("one", [1.0], [100], [4])
    r = simulate(w, config())
    prefill = 0.01 + 1e-4 * 100 + 1e-8 * 100**2
    transfer = 0.001 + 101 * 1000 / 1e7
    steps = sum(0.005 + 1e-4 + 1e-6 * ctx for ctx in (101, 102, 103))
    assert r.first_token_s[0] == pytest.approx(1.0 + prefill + transfer)
    assert r.finish_s[0] == pytest.approx(1.0 + prefill + transfer + steps)
    assert c.decode_step_time_s(1, 101) == pytest.approx(0.005 + 1e-4 + 1e-6 * 101)


def test_one_token_request_finishes_at_its_prefill() -> None:
    r = simulate(workload_from_arrays("one", [0.0], [100], [1]), config())
    prefill = 0.01 + 1e-4 * 100 + 1e-8 * 100**2
    assert r.first_token_s[0] == pytest.approx(prefill) == r.finish_s[0]


def test_conservation_every_request_ends_once_and_tokens_add_up() -> None:
    w = busy_workload()
    r = simulate(w, config(kv_capacity=6000, num_decode=2, record_timeline=True))
    m = r.metrics()
    assert m["num_completed"] + m["num_rejected"] == len(w)
    assert m["num_preempted"] > 0  # the small KV forces out-of-memory events
    done = r.completed
    assert np.array_equal(r.generated_tokens[done], r.output_tokens[done])
    assert np.all(r.finish_s[done] >= r.first_token_s[done])
    assert np.all(r.first_token_s[done] > r.arrival_s[done])
    assert r.decode_timelines is not None
    for timeline in r.decode_timelines:
        kv = np.array([kv for _, _, kv in timeline])
        assert kv.min() >= 0 and kv.max() <= 6000
        assert timeline[-1][1] == 0 and timeline[-1][2] == 0  # drained at the end


def test_requests_that_can_never_fit_are_rejected_and_counted() -> None:
    w = workload_from_arrays("r", [0.0, 0.1, 0.2], [100, 5000, 50], [10, 10, 10])
    r = simulate(w, config(kv_capacity=1000))
    m = r.metrics()
    assert m["num_rejected"] == 1 and m["num_completed"] == 2
    assert r.rejected.tolist() == [False, True, False]


def test_same_inputs_give_identical_results() -> None:
    w = busy_workload()
    a = simulate(w, config(kv_capacity=8000, num_decode=3, placement="least-kv"))
    b = simulate(w, config(kv_capacity=8000, num_decode=3, placement="least-kv"))
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(
        a.first_token_s, b.first_token_s
    )


@pytest.mark.parametrize("placement", ["round-robin", "least-kv", "least-requests"])
def test_fast_forward_equals_exact_stepping(placement: str) -> None:
    w = busy_workload(n=300)
    kw = {
        "kv_capacity": 7000,
        "num_prefill": 2,
        "num_decode": 3,
        "placement": placement,
        "max_batch_size": 16,
    }
    fast = simulate(w, config(**kw))
    exact = simulate(w, config(exact=True, **kw))
    assert fast.metrics()["num_preempted"] == exact.metrics()["num_preempted"]
    if placement == "round-robin":
        assert fast.metrics()["num_preempted"] > 0  # the comparison covers preemptions
    np.testing.assert_allclose(fast.first_token_s, exact.first_token_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.finish_s, exact.finish_s, rtol=0, atol=1e-9)


def test_same_time_events_run_by_priority_then_sequence() -> None:
    q = EventQueue()
    q.push(1.0, Priority.ARRIVED, "a")
    q.push(1.0, Priority.DECODE_STEP_DONE, "b")
    q.push(0.5, Priority.TICK, "c")
    q.push(1.0, Priority.DECODE_STEP_DONE, "d")
    assert [q.pop()[2] for _ in range(4)] == ["c", "b", "d", "a"]


def test_newest_request_is_preempted_when_kv_runs_out() -> None:
    # Two requests share a decode instance with room for ~ both prompts but not their growth.
    w = workload_from_arrays("p", [0.0, 0.001], [400, 400], [300, 300])
    r = simulate(w, config(kv_capacity=1100))
    assert r.num_preemptions.tolist() == [0, 1]
    assert r.finish_s[0] < r.finish_s[1]


def test_impossible_configurations_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one prefill and one decode"):
        config(num_decode=0)
    with pytest.raises(UnknownNameError, match="placement policy"):
        config(placement="magic")
    with pytest.raises(ConfigError, match="max batch size"):
        config(max_batch_size=0)
