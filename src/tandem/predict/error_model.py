"""A measured length-prediction error model the simulator samples from (numpy only, no torch).

What it stores: the empirical distribution of the log-ratio error
``e = ln((predicted + 1) / (true_remaining + 1))`` of a real predictor on held-out requests, as
quantiles per cell of a grid of two relative coordinates, so that it transfers from short
outputs (stories, ~150-500 tokens) to long ones (reasoning, up to 32K):

- progress: the prompt (no token generated yet) or the fraction generated so far,
  f = g / (g + true_remaining), in bins ``progress_edges`` over (0, 1);
- relative length: (g + true_remaining) / ``length_scale_tokens`` in bins ``length_edges``;
  ``length_scale_tokens`` is the source workload's median output length; ``rescaled`` sets it
  to the target workload's median, so "a request twice as long as typical" maps to itself.

``sample(g, true_remaining, rng)`` draws e from the cell's quantile function (linear between
stored quantiles) and returns max(0, round(exp(e) * (true_remaining + 1) - 1)). Draws are
independent per call; a simulator wanting a persistent per-request bias can keep one quantile
level u per request and call ``at_quantile``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tandem.errors import ConfigError, InputFormatError

FORMAT = "tandem-length-error-model"
VERSION = 1


@dataclass(frozen=True)
class ErrorModel:
    """Quantiles of the log-ratio error per (progress bin, relative-length bin).

    ``quantiles`` has shape [1 + len(progress_edges) - 1, len(length_edges) - 1, len(levels)];
    progress row 0 is the prompt (g == 0).
    """

    progress_edges: tuple[float, ...]
    length_edges: tuple[float, ...]
    levels: tuple[float, ...]
    quantiles: np.ndarray
    length_scale_tokens: float
    metadata: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> ErrorModel:
        """Read a JSON error model (e.g. ``tandem.predict.data/stories260k_error_model.json``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputFormatError(path, None, None, "no such file") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFormatError(path, None, None, f"not a JSON error model: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputFormatError(path, None, "format", f"expected {FORMAT!r}")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFormatError(path, None, None, f"malformed error model: {exc}") from exc

    @classmethod
    def packaged(cls, name: str = "stories260k") -> ErrorModel:
        """The error model shipped in ``tandem/predict/data`` (measured on stories260K)."""
        path = resources.files("tandem.predict") / "data" / f"{name}_error_model.json"
        return cls.load(Path(str(path)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorModel:
        progress = tuple(float(x) for x in data["progress_edges"])
        lengths = tuple(float(x) for x in data["length_edges"])
        levels = tuple(float(x) for x in data["levels"])
        table = np.full((len(progress), len(lengths) - 1, len(levels)), np.nan)
        for cell in data["cells"]:
            table[int(cell["progress_bin"]), int(cell["length_bin"])] = cell["quantiles"]
        if np.isnan(table).any():
            raise ValueError("some (progress, length) cells have no quantiles")
        if np.any(np.diff(table, axis=-1) < 0):
            raise ValueError("quantiles must be non-decreasing")
        return cls(
            progress,
            lengths,
            levels,
            table,
            float(data["length_scale_tokens"]),
            dict(data.get("metadata", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        cells = [
            {
                "progress_bin": p,
                "length_bin": n,
                "quantiles": [round(float(q), 6) for q in self.quantiles[p, n]],
            }
            for p in range(self.quantiles.shape[0])
            for n in range(self.quantiles.shape[1])
        ]
        return {
            "format": FORMAT,
            "version": VERSION,
            "error": "log_ratio = ln((predicted + 1) / (true_remaining + 1))",
            "progress_edges": list(self.progress_edges),
            "length_edges": list(self.length_edges),
            "levels": list(self.levels),
            "length_scale_tokens": self.length_scale_tokens,
            "metadata": self.metadata,
            "cells": cells,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    def rescaled(self, length_scale_tokens: float) -> ErrorModel:
        """The same errors for a workload whose median output length is ``length_scale_tokens``."""
        if not length_scale_tokens > 0:
            raise ConfigError(f"length_scale_tokens must be > 0, got {length_scale_tokens}")
        return replace(self, length_scale_tokens=float(length_scale_tokens))

    def cells_of(self, tokens_generated: Any, true_remaining: Any) -> tuple[np.ndarray, np.ndarray]:
        """(progress bin, length bin) of each request state."""
        g = np.asarray(tokens_generated, dtype=float)
        r = np.asarray(true_remaining, dtype=float)
        total = g + r
        fraction = g / np.maximum(total, 1.0)
        inner = np.asarray(self.progress_edges[1:-1])
        progress = np.where(g <= 0, 0, 1 + np.searchsorted(inner, fraction, side="left"))
        relative = total / self.length_scale_tokens
        length = np.searchsorted(np.asarray(self.length_edges[1:-1]), relative, side="right")
        return progress.astype(np.int64), length.astype(np.int64)

    def at_quantile(self, tokens_generated: Any, true_remaining: Any, u: Any) -> Any:
        """Predicted remaining tokens at quantile level(s) ``u`` in [0, 1] of the error."""
        progress, length = self.cells_of(tokens_generated, true_remaining)
        position = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        levels = np.asarray(self.levels)
        # Each state's cell as one row of the table; only the two quantiles around ``u`` are
        # read (gathering whole rows copied num_levels values per state).
        table = self.quantiles.reshape(-1, levels.size)
        cell = (progress * self.quantiles.shape[1] + length).reshape(-1)
        pos = np.broadcast_to(position, progress.shape).reshape(-1)
        index = np.clip(np.searchsorted(levels, pos, side="right") - 1, 0, levels.size - 2)
        low, high = levels[index], levels[index + 1]
        weight = (pos - low) / np.where(high > low, high - low, 1.0)
        error = table[cell, index] * (1.0 - weight) + table[cell, index + 1] * weight
        r = np.broadcast_to(np.asarray(true_remaining, dtype=float), progress.shape).reshape(-1)
        predicted = np.where(r > 0, np.maximum(0.0, np.rint(np.exp(error) * (r + 1.0) - 1.0)), 0.0)
        out = predicted.astype(np.int64).reshape(progress.shape)
        return int(out) if out.ndim == 0 else out

    def sample(self, tokens_generated: Any, true_remaining: Any, rng: np.random.Generator) -> Any:
        """A predicted remaining length for each state, drawn from the measured error."""
        shape = np.broadcast_shapes(np.shape(tokens_generated), np.shape(true_remaining))
        return self.at_quantile(tokens_generated, true_remaining, rng.random(shape))

    def summary(self) -> str:
        n = self.metadata.get("num_samples", "?")
        return (
            f"{self.quantiles.shape[0]}x{self.quantiles.shape[1]} cells, {n} samples, "
            f"median output {self.length_scale_tokens:.0f} tokens"
        )
