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
(request, refresh number), so a prediction does not depend on when or how often it is read.
"""

from __future__ import annotations

from collections.abc import Sequence

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
            float(arg)
        except ValueError:
            raise ConfigError(f"bad noise level in '{spec}'; use noise:0.5") from None


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
        # request index -> (generated at the last refresh, predicted remaining then)
        self._cache: dict[int, tuple[int, float]] = {}

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

    def _pool_index(self, index: int, refresh: int) -> int:
        return (index * 1_000_003 + refresh * 7_919) % _POOL_SIZE

    def remaining_many(
        self, requests: Sequence[SimRequest], generated: Sequence[int]
    ) -> list[float]:
        """Predicted remaining tokens of each running request after ``generated`` tokens,
        refreshing (in one batched draw) those that crossed a refresh point."""
        k = self.refresh_tokens
        cache = self._cache
        out: list[float] = []
        stale: list[tuple[int, SimRequest, int]] = []
        for position, (request, g) in enumerate(zip(requests, generated, strict=True)):
            point = g - g % k
            cached = cache.get(request.index)
            if cached is None or cached[0] != point:
                stale.append((position, request, point))
                out.append(0.0)
            else:
                value = cached[1] - (g - point)
                out.append(value if value > 0.0 else 0.0)
        if stale:
            values = self._draw(stale)
            for (position, request, point), value in zip(stale, values, strict=True):
                cache[request.index] = (point, value)
                left = value - (generated[position] - point)
                out[position] = left if left > 0.0 else 0.0
        return out

    def _draw(self, stale: list[tuple[int, SimRequest, int]]) -> list[float]:
        k = self.refresh_tokens
        truth = np.array([r.output_tokens - p for _, r, p in stale], dtype=np.int64)
        if self.kind == "oracle":
            return truth.astype(float).tolist()
        slots = np.array([self._pool_index(r.index, p // k) for _, r, p in stale], dtype=np.int64)
        if self.kind == "noise":
            return (truth * np.exp(self._sigma * self._normal[slots])).tolist()
        assert self._error_model is not None
        points = np.array([p for _, _, p in stale], dtype=np.int64)
        drawn = self._error_model.at_quantile(points, truth, self._uniform[slots])
        return np.asarray(drawn, dtype=float).reshape(-1).tolist()

    def remaining(self, request: SimRequest, generated: int) -> float | None:
        """Predicted remaining tokens of one request (``None`` without a source)."""
        if not self.enabled:
            return None
        return self.remaining_many([request], [generated])[0]

    def forget(self, request: SimRequest) -> None:
        self._cache.pop(request.index, None)
