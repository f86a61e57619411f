"""Prefill service-time variability: iteration times drawn around the cost model.

A cost model gives one deterministic time per prefill batch, so a prefill queue behaves as
M/D/c and TTFT never shows the knee a real deployment has near saturation (kernel-time jitter,
scheduler hiccups, garbage collection, stragglers across tensor-parallel ranks). With a
coefficient of variation ``cv > 0``, each prefill iteration instead takes

    time = cost_model_time * X,   X ~ Gamma(shape = 1 / cv^2, scale = cv^2)

so ``E[X] = 1`` (the cost model stays the mean) and ``std(X) = cv``. ``cv = 1`` makes ``X``
exponential, i.e. an M/M/c prefill queue; ``cv = 0`` draws nothing and reproduces the
deterministic run exactly. Gamma rather than lognormal: its shape parameter is the squared
inverse CV, and ``cv = 1`` is the textbook exponential case.

The RNG belongs to the run (seeded from ``ClusterConfig.seed`` on a stream separate from the
prediction noise), and draws are taken in event order, which the event queue makes
deterministic: the same seed gives the same run.
"""

from __future__ import annotations

import math

import numpy as np

from tandem.errors import ConfigError

#: Multipliers are drawn in blocks of this many (one numpy call instead of one per batch).
_BLOCK = 4096
#: Separates this stream from the prediction source's, which uses the bare seed.
_STREAM = 0x5EED_F11


def check_cv(cv: float) -> None:
    """Refuse a coefficient of variation that is negative or not finite."""
    if not math.isfinite(cv) or cv < 0:
        raise ConfigError(f"prefill coefficient of variation must be finite and >= 0, got {cv}")


class ServiceTimeNoise:
    """Gamma multipliers with mean 1 and coefficient of variation ``cv`` (see the module doc)."""

    __slots__ = ("cv", "_rng", "_shape", "_block", "_next")

    def __init__(self, cv: float, seed: int) -> None:
        check_cv(cv)
        self.cv = cv
        self._rng = np.random.default_rng([seed, _STREAM])
        self._shape = 1.0 / (cv * cv) if cv > 0 else math.inf
        self._block: list[float] = []
        self._next = 0

    def multiplier(self) -> float:
        """The next factor to apply to one iteration's cost-model time (1.0 when ``cv == 0``)."""
        if self.cv == 0:
            return 1.0
        if self._next == len(self._block):
            draws = self._rng.gamma(self._shape, 1.0 / self._shape, _BLOCK)
            self._block = draws.tolist()
            self._next = 0
        value = self._block[self._next]
        self._next += 1
        return value
