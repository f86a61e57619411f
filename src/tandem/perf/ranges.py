"""The measured range of a profile and the warning raised when a query leaves it.

A cost model built from measurements still answers outside them (by its fitted form, or by
linear extrapolation of a table), but says so: the first query outside the range warns with
``OutOfMeasuredRangeWarning``, once per cost-model object, never silently and never repeatedly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field


class TandemWarning(UserWarning):
    """Base class of Tandem's warnings (filter on it to silence or escalate them all)."""


class OutOfMeasuredRangeWarning(TandemWarning):
    """A cost model was asked about a batch outside the range it was measured on."""


@dataclass(frozen=True, slots=True)
class MeasuredRange:
    """Largest quantities seen in the measurements; ``None`` means "not limited / unknown"."""

    max_prompt_tokens: int | None = None
    max_prefill_batch_tokens: int | None = None
    max_decode_batch_size: int | None = None
    min_decode_batch_size: int | None = None
    max_context_tokens_per_request: int | None = None

    def prefill_excess(self, max_prompt: int, total_tokens: int) -> str | None:
        """Why a prefill batch is outside the range, or ``None`` if it is inside."""
        if self.max_prompt_tokens is not None and max_prompt > self.max_prompt_tokens:
            return f"prompt of {max_prompt} tokens > measured {self.max_prompt_tokens}"
        limit = self.max_prefill_batch_tokens
        if limit is not None and total_tokens > limit:
            return f"prefill batch of {total_tokens} tokens > measured {limit}"
        return None

    def decode_excess(self, batch_size: int) -> str | None:
        """Why a decode batch size is outside the range, or ``None`` if it is inside."""
        if self.max_decode_batch_size is not None and batch_size > self.max_decode_batch_size:
            return f"decode batch of {batch_size} > measured {self.max_decode_batch_size}"
        if self.min_decode_batch_size is not None and batch_size < self.min_decode_batch_size:
            return f"decode batch of {batch_size} < measured {self.min_decode_batch_size}"
        return None

    def context_excess(self, batch_size: int, total_context_tokens: int) -> str | None:
        """Why a decode batch's mean context is outside the range, or ``None``."""
        limit = self.max_context_tokens_per_request
        if limit is None or batch_size <= 0:
            return None
        mean = total_context_tokens / batch_size
        if mean > limit:
            return f"mean context of {mean:.0f} tokens > measured {limit}"
        return None


@dataclass(frozen=True, slots=True)
class MeasuredSpans:
    """The measured ``(lowest, highest)`` of each quantity a plot can put on an axis: prompt
    tokens (batch of one), decode batch size, context tokens per request. ``None`` at either
    end: not limited there (or not measured: a roofline model has no spans)."""

    prompt_tokens: tuple[float | None, float | None] = (None, None)
    decode_batch_size: tuple[float | None, float | None] = (None, None)
    context_tokens_per_request: tuple[float | None, float | None] = (None, None)

    @classmethod
    def of_range(cls, r: MeasuredRange) -> MeasuredSpans:
        return cls(
            (None, r.max_prompt_tokens),
            (r.min_decode_batch_size, r.max_decode_batch_size),
            (None, r.max_context_tokens_per_request),
        )


def outside(span: tuple[float | None, float | None], value: float) -> bool:
    """Whether ``value`` lies outside a measured ``span``."""
    lo, hi = span
    return (lo is not None and value < lo) or (hi is not None and value > hi)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a plan or a simulated run asked of a cost model: the extremes of the quantities a
    measured range limits (``None``: not asked). ``CostModel.extrapolations`` compares them
    with the measured range, once, after the fact, instead of a warning from inside a run."""

    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    max_prefill_batch_tokens: int | None = None
    min_decode_batch_size: int | None = None
    max_decode_batch_size: int | None = None
    max_context_tokens_per_request: float | None = None


def range_excesses(r: MeasuredRange, usage: Usage) -> list[str]:
    """Every way ``usage`` leaves the measured range ``r`` (empty when it stays inside)."""
    out = []
    checks = (
        (usage.max_prompt_tokens, r.max_prompt_tokens, "prompt", "tokens", 1),
        (usage.max_prefill_batch_tokens, r.max_prefill_batch_tokens, "prefill batch", "tokens", 1),
        (usage.max_decode_batch_size, r.max_decode_batch_size, "decode batch", "", 1),
        (usage.min_decode_batch_size, r.min_decode_batch_size, "decode batch", "", -1),
        (
            usage.max_context_tokens_per_request,
            r.max_context_tokens_per_request,
            "mean context",
            "tokens per request",
            1,
        ),
    )
    for used, limit, what, unit, sign in checks:
        if used is None or limit is None or (used - limit) * sign <= 0:
            continue
        side = "above" if sign > 0 else "below"
        out.append(
            f"{what} of {used:,.0f}{' ' + unit if unit else ''} {side} the measured "
            f"{'max' if sign > 0 else 'min'} {limit:,}"
        )
    return out


@dataclass(slots=True)
class WarnOnce:
    """A latch owned by one cost model: the first ``warn`` fires, later ones are dropped.

    It is the only mutable part of otherwise frozen cost models, and holds no result: two
    runs with the same inputs compute the same times whether or not it has fired.
    """

    fired: bool = field(default=False)

    def warn(self, profile_name: str, reason: str) -> None:
        if self.fired:
            return
        self.fired = True
        warnings.warn(
            f"profile '{profile_name}': {reason}; answering by extrapolation "
            "(further out-of-range queries to this profile are not reported)",
            OutOfMeasuredRangeWarning,
            stacklevel=3,
        )
