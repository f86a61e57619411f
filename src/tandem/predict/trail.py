"""TRAIL-style refinement (Shahout et al., ICLR 2025): a bin classifier plus Bayesian updating.

Bins cover remaining lengths [edges[i], edges[i+1]) with integer edges: equal widths as TRAIL
used (10 bins over [0, 512]) for short outputs, log-spaced for long ones (``choose_edges``). A
probability vector over bins is kept per request:

1. At prefill, the posterior is the classifier's output on the prompt (mean of prompt states).
2. Between two refreshes d tokens apart, the belief drifts: each generated token, a request in
   bin i stays with probability 1 - 1/w_i or moves one bin down with 1/w_i (w_i = bin width in
   tokens; bin 0 is absorbing). So the prior is ``posterior @ M**d``.
3. The prior is multiplied element-wise by the classifier's new output and normalised.
4. The prediction is the posterior median (interpolated inside its bin; it minimises the
   expected absolute error) or the posterior mean (bin midpoints).

Numpy only.
"""

from __future__ import annotations

import numpy as np

from tandem.errors import ConfigError


def log_spaced_edges(max_tokens: int, num_bins: int) -> np.ndarray:
    """``num_bins + 1`` strictly increasing integer edges from 1 to above ``max_tokens``."""
    if num_bins < 1 or max_tokens < 1:
        raise ConfigError("need num_bins >= 1 and max_tokens >= 1")
    raw = np.geomspace(1.0, float(max_tokens + 1), num_bins + 1)
    edges = np.empty(num_bins + 1, dtype=np.int64)
    for i, value in enumerate(raw):
        edges[i] = int(round(value)) if i == 0 else max(int(round(value)), int(edges[i - 1]) + 1)
    return edges


def linear_edges(max_tokens: int, num_bins: int) -> np.ndarray:
    """``num_bins + 1`` equally spaced integer edges from 1 to above ``max_tokens``."""
    if num_bins < 1 or max_tokens < num_bins:
        raise ConfigError("need num_bins >= 1 and max_tokens >= num_bins")
    return np.round(np.linspace(1.0, float(max_tokens + 1), num_bins + 1)).astype(np.int64)


# Above this many remaining tokens, equal-width bins get too coarse at the short end.
LOG_SPACING_ABOVE_TOKENS = 1024


def choose_edges(max_tokens: int, num_bins: int, spacing: str = "auto") -> np.ndarray:
    """Bin edges by ``spacing``: "linear", "log", or "auto" (log above 1,024 tokens)."""
    if spacing == "auto":
        spacing = "log" if max_tokens > LOG_SPACING_ABOVE_TOKENS else "linear"
    if spacing == "linear":
        return linear_edges(max_tokens, num_bins)
    if spacing == "log":
        return log_spaced_edges(max_tokens, num_bins)
    raise ConfigError(f"bin spacing must be auto, linear or log, got {spacing!r}")


def bin_index(remaining: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each remaining length (values past the last edge go to the last bin)."""
    index = np.searchsorted(edges, np.asarray(remaining), side="right") - 1
    return np.clip(index, 0, edges.size - 2)


def transition_matrix(edges: np.ndarray, tokens: int = 1) -> np.ndarray:
    """Row-stochastic drift over ``tokens`` generated tokens: ``p_next = p @ M``."""
    widths = np.diff(edges).astype(float)
    num_bins = widths.size
    one = np.zeros((num_bins, num_bins))
    one[0, 0] = 1.0
    for i in range(1, num_bins):
        one[i, i] = 1.0 - 1.0 / widths[i]
        one[i, i - 1] = 1.0 / widths[i]
    return np.linalg.matrix_power(one, int(tokens))


def bayes_update(posterior: np.ndarray, drift: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    """One refresh: drift the belief, weigh by the classifier's output, normalise."""
    updated = (posterior @ drift) * likelihood
    total = updated.sum(axis=-1, keepdims=True)
    fallback = likelihood / likelihood.sum(axis=-1, keepdims=True)
    return np.where(total > 0, updated / np.where(total > 0, total, 1.0), fallback)


def refine(
    probs: np.ndarray, generated: np.ndarray, request_ids: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """Posteriors [N, K] for samples ordered arbitrarily; each request's chain runs in g order."""
    posteriors = np.empty_like(probs, dtype=float)
    drift_cache: dict[int, np.ndarray] = {}
    order = np.lexsort((generated, request_ids))
    previous_request, previous_g, belief = None, 0, np.empty(0)
    for row in order:
        request, g = int(request_ids[row]), int(generated[row])
        if request != previous_request:
            belief = probs[row] / probs[row].sum()
        else:
            step = g - previous_g
            if step not in drift_cache:
                drift_cache[step] = transition_matrix(edges, step)
            belief = bayes_update(belief, drift_cache[step], probs[row])
        posteriors[row] = belief
        previous_request, previous_g = request, g
    return posteriors


def posterior_median(posteriors: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Median remaining length of each belief, interpolated linearly inside its bin."""
    cdf = np.cumsum(posteriors, axis=-1)
    index = np.minimum((cdf < 0.5).sum(axis=-1), posteriors.shape[-1] - 1)
    below = np.where(index > 0, np.take_along_axis(cdf, (index - 1)[..., None], -1)[..., 0], 0.0)
    mass = np.take_along_axis(posteriors, index[..., None], -1)[..., 0]
    fraction = np.clip((0.5 - below) / np.where(mass > 0, mass, 1.0), 0.0, 1.0)
    widths = np.diff(edges).astype(float)
    return edges[index] + fraction * widths[index]


def posterior_mean(posteriors: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean remaining length of each belief, bins at their midpoints."""
    mids = (edges[:-1] + edges[1:]) / 2.0
    return posteriors @ mids
