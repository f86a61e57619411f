"""TRAIL's bins and Bayesian refinement, hand-checked on small examples."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.predict import trail


def test_three_bin_update_by_hand():
    """Edges 0,2,4,8 (widths 2,2,4): drift one token, weigh by the classifier, normalise."""
    edges = np.array([0, 2, 4, 8])
    drift = trail.transition_matrix(edges, 1)
    expected = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    np.testing.assert_allclose(drift, expected)
    prior = np.array([0.2, 0.3, 0.5])
    likelihood = np.array([0.5, 0.25, 0.25])
    # prior @ M = [0.35, 0.275, 0.375]; times likelihood = [0.175, 0.06875, 0.09375]; / 0.3375
    np.testing.assert_allclose(
        trail.bayes_update(prior, drift, likelihood),
        [0.175 / 0.3375, 0.06875 / 0.3375, 0.09375 / 0.3375],
    )


def test_drift_over_several_tokens_is_the_matrix_power():
    """Applying the per-token drift k times equals the k-th power used between refreshes."""
    edges = np.array([0, 2, 4, 8])
    one = trail.transition_matrix(edges, 1)
    p = np.array([0.0, 0.0, 1.0])
    for _ in range(3):
        p = p @ one
    np.testing.assert_allclose(p, np.array([0.0, 0.0, 1.0]) @ trail.transition_matrix(edges, 3))
    np.testing.assert_allclose(trail.transition_matrix(edges, 20).sum(axis=1), 1.0)


def test_refine_runs_each_request_in_step_order():
    """The chain restarts per request and follows g order even if rows are shuffled."""
    edges = np.array([0, 2, 4, 8])
    probs = np.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    gen = np.array([1, 0, 0])
    req = np.array([7, 7, 8])
    post = trail.refine(probs, gen, req, edges)
    np.testing.assert_allclose(post[1], [0.5, 0.25, 0.25])  # first of request 7: its own output
    expected = trail.bayes_update(
        np.array([0.5, 0.25, 0.25]), trail.transition_matrix(edges, 1), probs[0]
    )
    np.testing.assert_allclose(post[0], expected)
    np.testing.assert_allclose(post[2], probs[2])


def test_posterior_median_and_mean():
    """Median interpolates inside the bin holding the 50% point; mean uses bin midpoints."""
    edges = np.array([0, 2, 4, 8])
    p = np.array([[0.25, 0.5, 0.25]])
    assert trail.posterior_median(p, edges)[0] == pytest.approx(3.0)
    assert trail.posterior_mean(p, edges)[0] == pytest.approx(0.25 * 1 + 0.5 * 3 + 0.25 * 6)


def test_log_spaced_edges_are_strictly_increasing_integers():
    """Log-spaced edges start at 1, end past the maximum, and every bin is >= 1 token wide."""
    edges = trail.log_spaced_edges(500, 10)
    assert edges[0] == 1 and edges[-1] >= 501 and edges.size == 11
    assert np.all(np.diff(edges) >= 1)
    assert trail.bin_index(np.array([1, 500, 10_000]), edges).tolist() == [0, 9, 9]


def test_bin_spacing_choice():
    """Short outputs get TRAIL's equal-width bins, long ones log-spaced bins."""
    short = trail.choose_edges(511, 10)
    assert short[0] == 1 and short[-1] == 512 and len(set(np.diff(short).tolist())) <= 2
    long = trail.choose_edges(32_000, 10)
    assert np.diff(long)[0] < np.diff(long)[-1] / 100
