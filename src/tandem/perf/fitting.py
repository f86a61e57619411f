"""Least squares with non-negative coefficients on relative error: how every built-in profile's
form is fitted (``scripts/build_profiles.py``) and judged.

Relative error, because a 5 ms error matters on a 30 ms decode step and not on a 3 s prefill;
non-negative coefficients, because a negative per-token cost would make more work faster.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def fit_nonneg_relative(features: ArrayLike, targets: ArrayLike) -> NDArray[np.float64]:
    """Coefficients ``c >= 0`` minimising ``sum(((X @ c - y) / y)^2)``.

    Exact for the handful of columns used here: every subset of columns is solved by ordinary
    least squares and the best feasible (all coefficients >= 0) solution is kept.
    """
    x = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError("features must be (n, p) and targets (n,)")
    if np.any(y <= 0):
        raise ValueError("targets must be > 0 for a relative-error fit")
    if x.shape[1] > 8:
        raise ValueError("at most 8 columns (the subset search is exponential)")
    xw = x / y[:, None]
    ones = np.ones_like(y)
    best = np.zeros(x.shape[1])
    best_loss = float(np.sum(ones**2))
    for size in range(1, x.shape[1] + 1):
        for cols in combinations(range(x.shape[1]), size):
            sub = xw[:, cols]
            coef, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if np.any(coef < 0):
                continue
            loss = float(np.sum((sub @ coef - ones) ** 2))
            if loss < best_loss - 1e-15:
                best_loss = loss
                best = np.zeros(x.shape[1])
                best[list(cols)] = coef
    return best


def abs_pct_errors(predicted: ArrayLike, measured: ArrayLike) -> NDArray[np.float64]:
    """``|predicted - measured| / measured`` in percent, element-wise."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    return np.abs(p - m) / m * 100.0
