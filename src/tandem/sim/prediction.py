"""Predicted remaining output length of running requests, as the data plane would know it.

A prediction source gives each running request a predicted number of remaining tokens,
refreshed every ``refresh_tokens`` generated tokens (ARES refreshes from the newest token's
hidden state); between refreshes the prediction counts down by one per generated token.

Sources (``--prediction``):

- ``none``: no predictions (views carry ``None``).
- ``oracle``: the true remaining length (an upper bound on what prediction can give).
- ``noise:SIGMA``: the true remaining length times ``exp(SIGMA * z)``, z standard normal, drawn
  afresh at every refresh: a documented parametric model for what-if studies.
- ``error-model[:PATH]``: the measured error distribution of the real length predictor
  (``tandem.predict.error_model``; default: the one shipped, measured on stories260K), rescaled
  to the workload's median output length; a quantile level is drawn at every refresh.

Draws come from a pool of random numbers made once per run from the seed and indexed by
(request, refresh number), so a prediction does not depend on when or how often it is read. All
of a run's predictions are drawn up front in one vectorized pass (``prepare``); reading one is
then an array lookup, which keeps prediction-driven policies fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tandem.errors import ConfigError
from tandem.sim.request import SimRequest

_POOL_SIZE = 1 << 16
KINDS = ("none", "oracle", "noise", "error-model")


def check_prediction_spec(spec: str) -> None:
    """Refuse an unknown prediction source name (without loading anything)."""
    kind, _, arg = spec.partition(":")
    if kind not in KINDS:
        raise ConfigError(
            f"unknown prediction source '{spec}'; known: none, oracle, noise:SIGMA, "
            "error-model[:PATH]"
        )
    if kind == "noise" and arg:
        try:
            sigma = float(arg)
        except ValueError:
            raise ConfigError(f"bad noise level in '{spec}'; use noise:0.5") from None
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(
                f"noise level must be a finite number >= 0 (the log-normal sigma), got '{spec}'"
            )


class PredictionSource:
    """Predictions of one run: refreshed in batches, read per request."""

    def __init__(
        self,
        kind: str,
        *,
        refresh_tokens: int = 20,
        seed: int = 0,
        sigma: float = 0.5,
        error_model_path: str | None = None,
        median_output_tokens: float = 512.0,
    ) -> None:
        check_prediction_spec(kind)
        if refresh_tokens < 1:
            raise ConfigError(f"prediction refresh must be >= 1 token, got {refresh_tokens}")
        self.kind = kind
        self.refresh_tokens = refresh_tokens
        self._sigma = sigma
        # The pools are drawn only for sources that sample (every Simulator has a source).
        rng = np.random.default_rng(seed)
        sampling = kind in ("noise", "error-model")
        self._uniform = rng.random(_POOL_SIZE) if sampling else np.empty(0)
        self._normal = rng.standard_normal(_POOL_SIZE) if sampling else np.empty(0)
        self._error_model = None
        if kind == "error-model":
            from tandem.predict.error_model import ErrorModel

            model = ErrorModel.load(error_model_path) if error_model_path else ErrorModel.packaged()
            self._error_model = model.rescaled(median_output_tokens)
        # Every request's prediction at each of its refresh points, drawn once by ``prepare``:
        # request i's value after refresh j is ``_trajectory[_offset[i] + j]``.
        self._trajectory: memoryview | None = None
        self._offset: list[int] = []
        self._trajectory_array: np.ndarray | None = None
        self._offset_array: np.ndarray | None = None

    @classmethod
    def from_spec(
        cls, spec: str, *, refresh_tokens: int, seed: int, median_output_tokens: float
    ) -> PredictionSource:
        check_prediction_spec(spec)
        kind, _, arg = spec.partition(":")
        if kind == "noise":
            sigma = float(arg) if arg else 0.5
            return cls(kind, refresh_tokens=refresh_tokens, seed=seed, sigma=sigma)
        return cls(
            kind,
            refresh_tokens=refresh_tokens,
            seed=seed,
            error_model_path=arg or None,
            median_output_tokens=median_output_tokens,
        )

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def _pool_index(self, index: Any, refresh: Any) -> Any:
        return (index * 1_000_003 + refresh * 7_919) % _POOL_SIZE

    def prepare(self, requests: Sequence[SimRequest]) -> None:
        """Draw every request's prediction at every refresh point, in one vectorized pass.

        ``requests[i].index`` must be ``i``. The value drawn for refresh point ``p`` (tokens
        generated, a multiple of ``refresh_tokens``) depends only on the request, ``p`` and the
        seed, so reading predictions early, late or often never changes them.
        """
        if not self.enabled:
            return
        k = self.refresh_tokens
        outputs = np.fromiter((r.output_tokens for r in requests), dtype=np.int64)
        counts = outputs // k + 1  # refresh points 0, k, ... up to the last token
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        values = np.empty(int(counts.sum()), dtype=np.float64)
        chunk = 1 << 20
        request_of = np.repeat(np.arange(len(requests), dtype=np.int64), counts)
        for lo in range(0, values.size, chunk):
            owner = request_of[lo : lo + chunk]
            refresh = np.arange(lo, lo + owner.size, dtype=np.int64) - offsets[owner]
            points = refresh * k
            truth = outputs[owner] - points
            values[lo : lo + owner.size] = self._draw(owner, refresh, points, truth)
        self._trajectory = values.data  # a memoryview: indexing gives plain floats, fast
        self._offset = offsets.tolist()
        self._trajectory_array = values
        self._offset_array = offsets

    def _draw(
        self, owner: np.ndarray, refresh: np.ndarray, points: np.ndarray, truth: np.ndarray
    ) -> np.ndarray:
        if self.kind == "oracle":
            return truth.astype(np.float64)
        slots = self._pool_index(owner, refresh)
        if self.kind == "noise":
            return truth * np.exp(self._sigma * self._normal[slots])
        assert self._error_model is not None
        drawn = self._error_model.at_quantile(points, truth, self._uniform[slots])
        return np.asarray(drawn, dtype=np.float64)

    def remaining_many(
        self, requests: Sequence[SimRequest], generated: Sequence[int]
    ) -> list[float]:
        """Predicted remaining tokens of each running request after ``generated`` tokens: the
        prediction made at its last refresh point, counted down by the tokens since."""
        trajectory, offset, k = self._trajectory, self._offset, self.refresh_tokens
        if trajectory is None:
            raise RuntimeError("PredictionSource.prepare() must run before predictions are read")
        out: list[float] = []
        for request, g in zip(requests, generated, strict=True):
            value = trajectory[offset[request.index] + g // k] - g % k
            out.append(value if value > 0.0 else 0.0)
        return out

    def remaining_array(self, indices: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """``remaining_many`` vectorised: request indices and tokens generated as int64 arrays
        in, the same values (bit for bit) out as a float64 array."""
        trajectory, offset, k = self._trajectory_array, self._offset_array, self.refresh_tokens
        if trajectory is None or offset is None:
            raise RuntimeError("PredictionSource.prepare() must run before predictions are read")
        values = trajectory[offset[indices] + generated // k] - generated % k
        return np.where(values > 0.0, values, 0.0)

    def remaining(self, request: SimRequest, generated: int) -> float | None:
        """Predicted remaining tokens of one request (``None`` without a source)."""
        if not self.enabled:
            return None
        return self.remaining_many([request], [generated])[0]
