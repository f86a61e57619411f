"""Prediction sources read as the data plane sees them, and predictive decode admission."""

from __future__ import annotations

import numpy as np
import pytest

from sim_helpers import busy_workload, cost
from tandem.errors import ConfigError
from tandem.sim import ClusterConfig, simulate
from tandem.sim.prediction import PredictionSource
from tandem.sim.request import SimRequest


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
    w = busy_workload(n=400, rate=60.0)
    c = cost(7000)
    greedy = simulate(w, ClusterConfig(1, 3, c, c, placement="least-kv", prediction="oracle"))
    predictive = simulate(
        w,
        ClusterConfig(
            1, 3, c, c, placement="least-kv", prediction="oracle", admission="predictive"
        ),
    )
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
