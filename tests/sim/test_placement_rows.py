"""``ares`` placement on cached arrays (``tandem.sim.placement_rows``), and waiting queues whose
views are built as the rescheduler reads them, are pure optimisations: the same choices as
``AresPlacement.choose`` reading every instance at every placement and every view built."""

from __future__ import annotations

import numpy as np
import pytest

from sim_helpers import busy_workload, cost
from tandem.sim import ClusterConfig, decode
from tandem.sim.cluster import Simulator


@pytest.mark.parametrize(
    ("prediction", "rescheduler", "admission"),
    [
        ("noise:0.6", "ares", "predictive"),  # migrations, preemptions, noisy predictions
        ("oracle", "none", "greedy"),  # placement alone
        ("none", "ares", "greedy"),  # no projection: placement by KV used and pending
    ],
)
def test_cached_placement_rows_choose_as_every_instance_read(
    prediction: str, rescheduler: str, admission: str
) -> None:
    w = busy_workload(n=600, rate=300.0, seed=5)
    c = cost(9000)
    config = ClusterConfig(
        4, 8, c, c, placement="ares", rescheduler=rescheduler, prediction=prediction,
        admission=admission, max_batch_size=48,
    )  # fmt: skip
    results = []
    for vectorised in (True, False):
        decode.VECTORISED = vectorised
        try:
            sim = Simulator(config)
            assert (sim._placement_rows is not None) == vectorised
            results.append(sim.run(w))
        finally:
            decode.VECTORISED = True
    fast, reference = results
    m = fast.metrics()
    assert m["num_preempted"] > 0 or m["num_migrations"] > 0  # the cluster is under pressure
    assert np.array_equal(fast.first_token_s, reference.first_token_s, equal_nan=True)
    assert np.array_equal(fast.finish_s, reference.finish_s, equal_nan=True)
    assert fast.decode_busy_s == reference.decode_busy_s  # the same work on each instance
    assert np.array_equal(fast.num_preemptions, reference.num_preemptions)
    assert m == reference.metrics()
