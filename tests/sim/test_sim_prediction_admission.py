"""Prediction sources read as the data plane sees them, and predictive decode admission."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sim_helpers import busy_workload, cost
from tandem.errors import ConfigError
from tandem.perf.registry import get_profile
from tandem.sim import ClusterConfig, decode, simulate
from tandem.sim.prediction import PredictionSource
from tandem.sim.request import SimRequest
from tandem.workload.request import Request, Workload


def _requests(outputs: list[int]) -> list[SimRequest]:
    return [SimRequest(i, i, 0.0, 100, n) for i, n in enumerate(outputs)]


def test_oracle_is_the_true_remaining_length_at_every_token() -> None:
    requests = _requests([57, 300])
    source = PredictionSource("oracle", refresh_tokens=20)
    source.prepare(requests)
    for g in (1, 19, 20, 21, 56):
        assert source.remaining_many(requests[:1], [g]) == [57 - g]


def test_a_prediction_counts_down_between_refreshes_and_does_not_depend_on_reads() -> None:
    requests = _requests([500] * 50)
    a = PredictionSource("noise", refresh_tokens=20, sigma=0.8, seed=3)
    b = PredictionSource("noise", refresh_tokens=20, sigma=0.8, seed=3)
    a.prepare(requests)
    b.prepare(requests)
    first = a.remaining_many(requests, [40] * 50)
    assert a.remaining_many(requests, [45] * 50) == [max(0.0, v - 5) for v in first]
    # Read in another order and at other times: the same values.
    assert b.remaining_many(requests[::-1], [40] * 50) == first[::-1]
    # Noise really perturbs (the test would fail for an oracle).
    assert any(abs(v - 460) > 1 for v in first)


def test_predictions_must_be_prepared_before_reading() -> None:
    with pytest.raises(RuntimeError, match="prepare"):
        PredictionSource("oracle").remaining_many(_requests([10]), [1])


def test_predictive_admission_with_true_lengths_never_runs_out_of_memory() -> None:
    """Without a bound on the wait (``admission_max_wait_s=inf``)."""
    w = busy_workload(n=400, rate=60.0)
    c = cost(7000)
    greedy = simulate(w, ClusterConfig(1, 3, c, c, placement="least-kv", prediction="oracle"))
    predictive = simulate(
        w,
        ClusterConfig(
            1, 3, c, c, placement="least-kv", prediction="oracle", admission="predictive",
            admission_max_wait_s=math.inf,
        ),
    )  # fmt: skip
    assert greedy.metrics()["num_preempted"] > 0  # the scenario does run out of memory
    m = predictive.metrics()
    assert m["num_preempted"] == 0
    assert m["num_completed"] + m["num_rejected"] == len(w)
    done = predictive.completed
    assert np.array_equal(predictive.generated_tokens[done], predictive.output_tokens[done])


def test_predictive_admission_needs_predictions_and_a_known_name() -> None:
    c = cost(7000)
    with pytest.raises(ConfigError, match="prediction source"):
        ClusterConfig(1, 1, c, c, admission="predictive")
    with pytest.raises(ConfigError, match="unknown admission"):
        ClusterConfig(1, 1, c, c, admission="lazy")


def _long_then_big() -> Workload:
    """A request that runs long, then one that fits now but, by the projection with true
    lengths, overflows the 3,000-token instance long before the first ends."""
    return Workload(
        "long-then-big",
        (Request(0, 0.0, 100, 2500), Request(1, 0.1, 1000, 1000)),
    )


def test_predictive_admission_holds_a_request_back_for_a_bounded_time_only() -> None:
    """Issue 19: on long outputs predictive admission did worse than greedy, because a request
    that fits now waited for the batch's whole projected future (here the 12 s until the long
    request ends: a TTFT miss greedy admission does not have). Past ``admission_max_wait_s``
    the greedy rule alone decides."""
    c = cost(3000)
    base = ClusterConfig(1, 1, c, c, prediction="oracle", admission="predictive")
    unbounded = simulate(_long_then_big(), replace(base, admission_max_wait_s=math.inf))
    assert unbounded.ttft_s[1] > 10.0  # the old behaviour: it waits for the first to end
    for exact in (False, True):
        bounded = simulate(_long_then_big(), replace(base, exact=exact))
        assert base.admission_max_wait_s == 1.0
        # Placed at about 0.2 s, held 1 s, then the KV transfer (1,001 tokens: 0.1 s).
        assert 1.0 < bounded.ttft_s[1] < 1.5
        assert bounded.metrics()["num_completed"] == 2
    fast = simulate(_long_then_big(), base)
    exact_run = simulate(_long_then_big(), replace(base, exact=True))
    assert fast.ttft_s[1] == pytest.approx(exact_run.ttft_s[1], rel=1e-9)


def test_predictive_admission_with_a_zero_wait_is_greedy() -> None:
    w = busy_workload(n=200, rate=60.0)
    c = cost(7000)
    greedy = simulate(w, ClusterConfig(1, 2, c, c, placement="least-kv", prediction="oracle"))
    zero = simulate(
        w,
        ClusterConfig(
            1, 2, c, c, placement="least-kv", prediction="oracle", admission="predictive",
            admission_max_wait_s=0.0,
        ),
    )  # fmt: skip
    assert np.array_equal(greedy.first_token_s, zero.first_token_s)
    assert greedy.metrics()["num_preempted"] == zero.metrics()["num_preempted"]


def test_vectorised_projection_and_admission_decide_as_the_reference() -> None:
    """Issue 19 item 3: projected KV and predictive admission on arrays are a pure
    optimisation: a seeded run with migrations, preemptions and noisy predictions gives the
    same timestamps as the one-request-at-a-time reference code."""
    w = busy_workload(n=500, rate=90.0)
    c = cost(9000)
    config = ClusterConfig(
        2, 4, c, c, placement="ares", rescheduler="ares", prediction="noise:0.6",
        admission="predictive", max_batch_size=64,
    )  # fmt: skip
    results = []
    for vectorised in (True, False):
        decode.VECTORISED = vectorised
        try:
            results.append(simulate(w, config))
        finally:
            decode.VECTORISED = True
    fast, reference = results
    m = fast.metrics()
    assert m["num_migrations"] > 0 and m["num_preempted"] > 0  # the paths are exercised
    assert np.array_equal(fast.first_token_s, reference.first_token_s, equal_nan=True)
    assert np.array_equal(fast.finish_s, reference.finish_s, equal_nan=True)
    assert m == reference.metrics()


def test_shortest_predicted_order_admits_short_answers_first_and_ages() -> None:
    """One decode instance full of long requests, a queue of 30 with mixed true lengths: with
    oracle predictions, ``shortest-predicted`` admits the queue shortest first (a slow aging
    rate), and FCFS in arrival order; a fast aging rate is FCFS again."""
    profile = get_profile("llama2-70b_a100_tp2")
    outputs = [3000] * 10 + [int(x) for x in np.random.default_rng(1).integers(10, 3000, 30)]
    requests = tuple(Request(i, 0.001 * i, 4000, o) for i, o in enumerate(outputs))
    workload = Workload("queue", requests)

    def join_order(order: str, aging: float) -> list[int]:
        config = ClusterConfig(
            1, 1, profile, profile, prediction="oracle", admission_order=order,
            admission_aging_tokens_per_s=aging, prefill_token_budget=1 << 20,
        )  # fmt: skip
        result = simulate(workload, config)
        queued = np.arange(10, 40)
        return [int(i) for i in queued[np.argsort(result.ttft_s[queued], kind="stable")]]

    waiting_long = [10 + i for i in range(30)]
    shortest = sorted(waiting_long, key=lambda i: outputs[i])
    fcfs = join_order("fcfs", 1.0)
    sjf = join_order("shortest-predicted", 0.01)
    aged = join_order("shortest-predicted", 1e9)
    # The first requests of the queue may start at once (memory free); after that, order rules.
    assert sjf[-20:] == [i for i in shortest if i in sjf[-20:]]
    assert fcfs[-20:] == sorted(fcfs[-20:])
    assert aged == fcfs
    with pytest.raises(ConfigError, match="needs a prediction source"):
        ClusterConfig(1, 1, profile, profile, admission_order="shortest-predicted")
    with pytest.raises(ConfigError, match="unknown admission order"):
        ClusterConfig(1, 1, profile, profile, prediction="oracle", admission_order="sjf")
