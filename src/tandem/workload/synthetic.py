"""Synthetic workloads: Poisson or Gamma arrivals and parametric or empirical lengths.

Length distributions are small frozen objects with ``sample(n, rng)``; ``parse_length_spec``
reads the CLI form (``fixed:512``, ``uniform:100:2000``, ``lognormal:1000:1.5`` (mean, CV),
``empirical:azure-conv:output`` is resolved by the registry). Every draw comes from one
``numpy.random.Generator`` seeded by the caller, so a seed fixes the workload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tandem.errors import ConfigError
from tandem.workload.request import Workload, workload_from_arrays


class LengthDist:
    """A distribution of token counts (integers >= 1)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` lengths."""
        raise NotImplementedError


@dataclass(frozen=True)
class FixedLength(LengthDist):
    tokens: int

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ConfigError(f"fixed length must be >= 1, got {self.tokens}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.tokens, dtype=np.int64)


@dataclass(frozen=True)
class UniformLength(LengthDist):
    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise ConfigError(f"uniform lengths need 1 <= low <= high, got {self.low}, {self.high}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


@dataclass(frozen=True)
class LognormalLength(LengthDist):
    """Lognormal with the given mean and coefficient of variation, capped at ``max_tokens``."""

    mean: float
    cv: float
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.mean < 1 or self.cv <= 0:
            raise ConfigError(
                f"lognormal lengths need mean >= 1 and cv > 0, got {self.mean}, {self.cv}"
            )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sigma2 = math.log(1.0 + self.cv**2)
        mu = math.log(self.mean) - sigma2 / 2.0
        values = np.maximum(1, np.rint(rng.lognormal(mu, math.sqrt(sigma2), size=n)))
        if self.max_tokens is not None:
            values = np.minimum(values, self.max_tokens)
        return values.astype(np.int64)


@dataclass(frozen=True)
class EmpiricalLength(LengthDist):
    """Draws with replacement from observed lengths (for example a trace's outputs)."""

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.values or min(self.values) < 1:
            raise ConfigError("empirical lengths need at least one value, all >= 1")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, replace=True)


def parse_length_spec(spec: str) -> LengthDist:
    """``fixed:N`` | ``uniform:LO:HI`` | ``lognormal:MEAN:CV[:MAX]``."""
    kind, *args = spec.split(":")
    try:
        if kind == "fixed" and len(args) == 1:
            return FixedLength(int(args[0]))
        if kind == "uniform" and len(args) == 2:
            return UniformLength(int(args[0]), int(args[1]))
        if kind == "lognormal" and len(args) in (2, 3):
            cap = int(args[2]) if len(args) == 3 else None
            return LognormalLength(float(args[0]), float(args[1]), cap)
    except ValueError:
        pass
    raise ConfigError(
        f"bad length spec {spec!r}; use fixed:N, uniform:LO:HI or lognormal:MEAN:CV[:MAX]"
    )


def interarrival_times(n: int, rate_rps: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` gaps with mean ``1/rate_rps``: exponential when ``cv`` is 1 (Poisson arrivals),
    else Gamma with shape ``1/cv^2`` (bursty when ``cv`` > 1, smoother when < 1)."""
    if rate_rps <= 0:
        raise ConfigError(f"arrival rate must be > 0 requests/s, got {rate_rps}")
    if cv <= 0:
        raise ConfigError(f"inter-arrival CV must be > 0, got {cv}")
    if cv == 1.0:
        return rng.exponential(1.0 / rate_rps, size=n)
    shape = 1.0 / cv**2
    return rng.gamma(shape, 1.0 / (rate_rps * shape), size=n)


def synthetic_workload(
    *,
    num_requests: int,
    rate_rps: float,
    input_len: LengthDist,
    output_len: LengthDist,
    cv: float = 1.0,
    seed: int = 0,
    name: str = "synthetic",
) -> Workload:
    """``num_requests`` requests; the first arrives at 0 s."""
    if num_requests < 1:
        raise ConfigError(f"num_requests must be >= 1, got {num_requests}")
    rng = np.random.default_rng(seed)
    gaps = interarrival_times(num_requests, rate_rps, cv, rng)
    arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    prompts = input_len.sample(num_requests, rng)
    outputs = output_len.sample(num_requests, rng)
    return workload_from_arrays(name, arrivals, prompts, outputs)


def random_workload(
    *,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    rate_rps: float = math.inf,
    burstiness: float = 1.0,
    num_prompts: int = 1000,
    seed: int = 0,
) -> Workload:
    """``vllm bench serve --dataset-name random``'s workload: lengths drawn uniformly from
    ``[len * (1 - range_ratio), len * (1 + range_ratio)]`` (fixed when the ratio is 0); gaps
    from a gamma distribution of shape ``burstiness`` with mean ``1 / rate_rps`` (1 =
    Poisson, smaller = burstier); ``rate_rps = inf`` sends every request at 0 s, as vLLM
    does. Seeded; the first request arrives at 0 s."""
    for label, value in (("--random-input-len", input_len), ("--random-output-len", output_len)):
        if value < 1:
            raise ConfigError(f"{label} must be >= 1 token, got {value}")
    if not (math.isfinite(range_ratio) and 0 <= range_ratio < 1):
        raise ConfigError(f"--random-range-ratio must be in [0, 1), got {range_ratio}")
    if math.isnan(rate_rps) or rate_rps <= 0:
        raise ConfigError(f"--request-rate must be > 0 requests/s (or inf), got {rate_rps}")
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise ConfigError(f"--burstiness must be a finite number > 0, got {burstiness}")
    if num_prompts < 1:
        raise ConfigError(f"--num-prompts must be >= 1, got {num_prompts}")

    def lengths(mean: int) -> LengthDist:
        low = max(1, int(mean * (1 - range_ratio)))
        high = max(low, int(mean * (1 + range_ratio)))
        return FixedLength(mean) if low == high else UniformLength(low, high)

    rng = np.random.default_rng(seed)
    if math.isinf(rate_rps):
        arrivals = np.zeros(num_prompts)
    else:
        gaps = interarrival_times(num_prompts, rate_rps, 1.0 / math.sqrt(burstiness), rng)
        arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    prompts = lengths(input_len).sample(num_prompts, rng)
    outputs = lengths(output_len).sample(num_prompts, rng)
    rate = "inf" if math.isinf(rate_rps) else f"{rate_rps:g}"
    name = f"random-{input_len}x{output_len}@{rate}rps"
    note = (
        f"random: input {input_len}, output {output_len}, range ratio {range_ratio:g}, "
        f"{rate} req/s, burstiness {burstiness:g}, {num_prompts} prompts, seed {seed}"
    )
    return workload_from_arrays(name, arrivals, prompts, outputs, (note,))
