"""Split by request (never by sample): 70 / 15 / 15 train / validation / test, seeded.

All samples of one request fall in the same part, so a predictor is never tested on a request
whose other states it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.errors import ConfigError

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class RequestSplit:
    """Request ids of each part, sorted."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def ids(self, part: str) -> np.ndarray:
        if part not in PARTS:
            raise ConfigError(f"unknown split part {part!r}; known: {', '.join(PARTS)}")
        return np.asarray(getattr(self, part))

    def mask(self, request_ids: np.ndarray, part: str) -> np.ndarray:
        """Boolean mask over ``request_ids`` (e.g. a per-sample column) of the rows in ``part``."""
        return np.isin(request_ids, self.ids(part))


def split_requests(
    request_ids: np.ndarray, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> RequestSplit:
    """Shuffle the distinct ids with ``seed`` and cut them by ``fractions`` (rounded)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(
            f"split fractions must be three non-negatives summing to 1, got {fractions}"
        )
    ids = np.unique(np.asarray(request_ids))
    if ids.size < 3:
        raise ConfigError(f"need at least 3 requests to split, got {ids.size}")
    order = np.random.default_rng(seed).permutation(ids)
    n_train = max(1, int(round(fractions[0] * ids.size)))
    n_val = max(1, int(round(fractions[1] * ids.size)))
    n_train = min(n_train, ids.size - 2)
    n_val = min(n_val, ids.size - n_train - 1)
    return RequestSplit(
        train=np.sort(order[:n_train]),
        val=np.sort(order[n_train : n_train + n_val]),
        test=np.sort(order[n_train + n_val :]),
    )
