"""Accuracy metrics of a length predictor: MAE (overall, by progress) and Kendall tau.

Kendall tau here is tau-b (ties in either ranking are accounted for), computed exactly in
O(n^2) on small groups; it is 0 when either side is constant (no ranking information).

"Concurrent" tau, the figure a scheduler cares about: a decode instance holds a batch of
requests at different points of their generation and must rank them by remaining length.
``concurrent_kendall_tau`` simulates such batches from the test split: each batch draws
``batch_size`` distinct requests and, for each, one of its recorded samples uniformly at random
(a random point of progress); tau-b between predicted and true remaining is computed within the
batch, and the mean over ``num_batches`` batches is reported. ``same_step_kendall_tau`` is the
stricter variant where all compared requests have generated the same number of tokens (the
pair-weighted mean over step counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Progress buckets by tokens generated so far: (label, low inclusive, high inclusive).
PROGRESS_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1-100", 1, 100),
    ("101-200", 101, 200),
    ("201-300", 201, 300),
    ("301+", 301, None),
)


def mae(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error in tokens."""
    return float(np.mean(np.abs(np.asarray(predicted, float) - np.asarray(true, float))))


def mae_by_progress(
    predicted: np.ndarray,
    true: np.ndarray,
    generated: np.ndarray,
    buckets: Sequence[tuple[str, int, int | None]] = PROGRESS_BUCKETS,
) -> dict[str, dict[str, float]]:
    """MAE and sample count per bucket of tokens generated so far (empty buckets left out)."""
    out: dict[str, dict[str, float]] = {}
    for label, low, high in buckets:
        sel = generated >= low
        if high is not None:
            sel &= generated <= high
        if sel.any():
            out[label] = {"mae": mae(predicted[sel], true[sel]), "num_samples": int(sel.sum())}
    return out


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b of two equally long vectors; 0.0 if either is constant or n < 2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2:
        return 0.0
    i, j = np.triu_indices(x.size, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    untied_x, untied_y = np.count_nonzero(dx), np.count_nonzero(dy)
    if untied_x == 0 or untied_y == 0:
        return 0.0
    return float(np.sum(dx * dy) / np.sqrt(float(untied_x) * float(untied_y)))


def concurrent_kendall_tau(
    predicted: np.ndarray,
    true: np.ndarray,
    request_ids: np.ndarray,
    batch_size: int = 32,
    num_batches: int = 500,
    seed: int = 0,
) -> float:
    """Mean tau-b within simulated decode batches (see the module docstring)."""
    rows_by_request = _rows_by_request(request_ids)
    requests = np.array(sorted(rows_by_request))
    size = min(batch_size, requests.size)
    if size < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(num_batches):
        chosen = rng.choice(requests, size=size, replace=False)
        rows = np.array([rng.choice(rows_by_request[int(r)]) for r in chosen])
        taus.append(kendall_tau_b(predicted[rows], true[rows]))
    return float(np.mean(taus))


def same_step_kendall_tau(predicted: np.ndarray, true: np.ndarray, generated: np.ndarray) -> float:
    """Pair-weighted mean tau-b among samples with the same tokens-generated count."""
    total, weight = 0.0, 0.0
    for g in np.unique(generated):
        sel = generated == g
        n = int(sel.sum())
        if n < 2:
            continue
        pairs = n * (n - 1) / 2
        total += pairs * kendall_tau_b(predicted[sel], true[sel])
        weight += pairs
    return total / weight if weight else 0.0


def _rows_by_request(request_ids: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(request_ids, kind="stable")
    ids, starts = np.unique(request_ids[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(r): g for r, g in zip(ids, groups, strict=True)}
