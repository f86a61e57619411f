"""What the planner is asked: a workload shape, a load and SLOs; and parsers for the CLI forms.

A ``WorkloadShape`` carries the mean lengths the paper uses and, when the plan comes from a
trace or an embedded workload, the per-request lengths and the burstiness of arrivals (squared
coefficient of variation of the inter-arrival gaps; 1 for Poisson).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.errors import ConfigError
from tandem.workload.request import Workload

_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
_PER = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0}


@dataclass(frozen=True)
class WorkloadShape:
    """Lengths and burstiness of the requests to plan for (the rate is given separately)."""

    mean_input_tokens: float
    mean_output_tokens: float
    prompt_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    arrival_cv2: float = 1.0
    name: str = "means"

    def __post_init__(self) -> None:
        if not self.mean_input_tokens > 0:
            raise ConfigError(f"input length must be > 0 tokens, got {self.mean_input_tokens}")
        if not self.mean_output_tokens > 0:
            raise ConfigError(f"output length must be > 0 tokens, got {self.mean_output_tokens}")
        if not self.arrival_cv2 >= 0:
            raise ConfigError(f"arrival CV^2 must be >= 0, got {self.arrival_cv2}")

    @property
    def tokens_per_request(self) -> float:
        return self.mean_input_tokens + self.mean_output_tokens

    def prompts(self) -> np.ndarray:
        """Per-request prompt lengths (one mean-length prompt when only means are known)."""
        if self.prompt_tokens is None:
            return np.array([round(self.mean_input_tokens)], dtype=np.int64)
        return self.prompt_tokens

    def decode_context_tokens(self) -> float:
        """Mean context of a request in the decode batch, averaged over batch time: a request
        with output ``o`` stays ``o`` steps with mean context ``L_in + o/2``, so the average is
        weighted by output length."""
        if self.prompt_tokens is None or self.output_tokens is None:
            return self.mean_input_tokens + self.mean_output_tokens / 2.0
        p = self.prompt_tokens.astype(float)
        o = self.output_tokens.astype(float)
        return float((o * (p + o / 2.0)).sum() / o.sum())

    def peak_context_tokens(self) -> float:
        return self.mean_input_tokens + self.mean_output_tokens


def shape_from_means(input_len: float, output_len: float) -> WorkloadShape:
    return WorkloadShape(float(input_len), float(output_len))


def shape_from_workload(w: Workload) -> WorkloadShape:
    """Lengths and arrival burstiness of a trace or embedded workload."""
    if len(w) < 2:
        raise ConfigError(f"workload '{w.name}' has {len(w)} request(s); need at least 2")
    prompts, outputs = w.prompt_tokens, w.output_tokens
    gaps = np.diff(w.arrivals_s)
    cv2 = float(gaps.var() / gaps.mean() ** 2) if gaps.mean() > 0 else 1.0
    return WorkloadShape(
        float(prompts.mean()), float(outputs.mean()), prompts, outputs, cv2, w.name
    )


def workload_rate_rps(w: Workload) -> float:
    if w.duration_s <= 0:
        raise ConfigError(f"workload '{w.name}' spans no time; give --rate or --throughput")
    return (len(w) - 1) / w.duration_s


def _number(text: str, what: str) -> float:
    text = text.strip().lower()
    scale = _SCALE.get(text[-1:], 1.0) if text[-1:].isalpha() else 1.0
    digits = text[:-1] if text[-1:] in _SCALE and text[-1:] else text
    try:
        value = float(digits) * scale
    except ValueError:
        raise ConfigError(f"bad {what} {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{what} must be > 0, got {text!r}")
    return value


def parse_throughput(text: str) -> float:
    """``5M/min``, ``83k/s``, ``1e5`` (per second) into input+output tokens per second."""
    amount, _, per = text.strip().lower().partition("/")
    per = per.strip() or "s"
    if per not in _PER:
        raise ConfigError(f"bad throughput unit in {text!r}; use e.g. 5M/min or 80k/s")
    return (
        _number(amount.removesuffix("tokens").removesuffix("tok").strip(), "throughput") / _PER[per]
    )


def parse_rate(text: str) -> float:
    """``10rps``, ``10/s``, ``600/min`` or ``10`` into requests per second."""
    t = text.strip().lower().removesuffix("rps").removesuffix("req")
    amount, _, per = t.partition("/")
    per = per.strip() or "s"
    if per not in _PER:
        raise ConfigError(f"bad rate unit in {text!r}; use e.g. 10rps or 600/min")
    return _number(amount, "request rate") / _PER[per]


def parse_duration_s(text: str) -> float:
    """``0.1s``, ``100ms`` or a bare number of seconds; must be >= 0."""
    t = text.strip().lower()
    try:
        value = float(t[:-2]) / 1e3 if t.endswith("ms") else float(t.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"bad duration {text!r}; use e.g. 0.1s or 100ms") from None
    if value < 0:
        raise ConfigError(f"duration must be >= 0, got {text!r}")
    return value


def parse_tpot_table(text: str) -> tuple[tuple[int, float], ...]:
    """``10:12.8,20:16.4`` (batch:TPOT in ms) into ``((10, 0.0128), (20, 0.0164))``."""
    points: list[tuple[int, float]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        batch, sep, tpot = part.partition(":")
        try:
            b, t = int(batch), float(tpot.strip().lower().removesuffix("ms")) / 1e3
        except ValueError:
            raise ConfigError(f"bad TPOT table item {part!r}; use batch:tpot_ms") from None
        if not sep or b < 1 or t <= 0:
            raise ConfigError(f"bad TPOT table item {part!r}; batch >= 1 and TPOT > 0 ms")
        if points and (b <= points[-1][0] or t < points[-1][1]):
            raise ConfigError(
                f"TPOT table item {part!r}: batches must increase and TPOT must not decrease"
            )
        points.append((b, t))
    if not points:
        raise ConfigError("empty TPOT table; use e.g. 10:12.8,20:16.4")
    return tuple(points)
