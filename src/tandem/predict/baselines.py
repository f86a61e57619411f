"""Baselines that need no model: the mean remaining length given the progress so far.

``ProgressTable`` buckets the tokens generated so far (bucket width = the sampling spacing, so
every recorded step count is its own bucket) and predicts the training mean (or median) of the
remaining length in that bucket. Step counts past the last trained bucket use the last one;
empty buckets in between take the nearest trained bucket below. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem.errors import ConfigError


@dataclass(frozen=True)
class ProgressTable:
    """Remaining-length statistic per bucket of tokens generated so far."""

    bucket_tokens: int
    values: tuple[float, ...]
    statistic: str = "mean"

    @classmethod
    def fit(
        cls,
        generated: np.ndarray,
        remaining: np.ndarray,
        bucket_tokens: int,
        statistic: str = "mean",
    ) -> ProgressTable:
        if bucket_tokens < 1:
            raise ConfigError(f"bucket_tokens must be >= 1, got {bucket_tokens}")
        if statistic not in ("mean", "median"):
            raise ConfigError(f"statistic must be 'mean' or 'median', got {statistic!r}")
        if generated.size == 0:
            raise ConfigError("cannot fit a progress table on zero samples")
        buckets = np.asarray(generated) // bucket_tokens
        reduce = np.mean if statistic == "mean" else np.median
        values: list[float] = []
        for b in range(int(buckets.max()) + 1):
            sel = buckets == b
            values.append(
                float(reduce(remaining[sel])) if sel.any() else values[-1] if values else 1.0
            )
        return cls(bucket_tokens, tuple(values), statistic)

    def predict(self, generated: np.ndarray) -> np.ndarray:
        index = np.minimum(np.asarray(generated) // self.bucket_tokens, len(self.values) - 1)
        return np.asarray(self.values)[index]

    @property
    def num_params(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket_tokens": self.bucket_tokens,
            "values": list(self.values),
            "statistic": self.statistic,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgressTable:
        return cls(
            int(data["bucket_tokens"]),
            tuple(float(v) for v in data["values"]),
            str(data["statistic"]),
        )
