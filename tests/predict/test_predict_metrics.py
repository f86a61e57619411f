"""Accuracy metrics: MAE by progress and Kendall tau-b."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.predict import metrics


def test_kendall_tau_b_known_values():
    """Same order is 1, reversed is -1, a constant side is 0, ties follow tau-b."""
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.kendall_tau_b(x, x * 10) == pytest.approx(1.0)
    assert metrics.kendall_tau_b(x, -x) == pytest.approx(-1.0)
    assert metrics.kendall_tau_b(x, np.ones(4)) == 0.0
    # x = 1,2,3 ; y = 1,1,2: concordant 2, discordant 0, ties in y 1 -> 2 / sqrt(3 * 2)
    assert metrics.kendall_tau_b([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / np.sqrt(6))


def test_kendall_tau_b_matches_scipy_when_available():
    """Cross-check on random data with ties against scipy (not a dependency)."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 40), rng.integers(0, 7, 40)
    assert metrics.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_mae_by_progress_buckets():
    """Samples are counted in the bucket of their tokens generated so far."""
    gen = np.array([0, 20, 100, 120, 400])
    out = metrics.mae_by_progress(np.array([1.0, 2, 3, 4, 5]), np.zeros(5), gen)
    assert out["0"] == {"mae": 1.0, "num_samples": 1}
    assert out["1-100"]["num_samples"] == 2 and out["1-100"]["mae"] == 2.5
    assert out["301+"]["mae"] == 5.0 and "201-300" not in out


def test_concurrent_tau_is_one_for_a_perfect_predictor():
    """A predictor equal to the truth ranks every simulated batch perfectly."""
    rng = np.random.default_rng(0)
    req = np.repeat(np.arange(50), 5)
    true = rng.integers(1, 500, req.size)
    assert metrics.concurrent_kendall_tau(
        true.astype(float), true, req, num_batches=20
    ) == pytest.approx(1.0)
    assert metrics.same_step_kendall_tau(
        true.astype(float), true, np.zeros(req.size)
    ) == pytest.approx(1.0)
