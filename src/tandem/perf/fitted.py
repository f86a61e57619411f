"""Cost model with fitted coefficients in the forms the field uses (DistServe, Splitwise).

prefill(L_1..L_n)    = a_j + b_j * sum(L) + c_j * sum(L^2)   segment j: sum(L) >= min_batch_tokens_j
decode_step(B, ctx)  = d_k + e_k * B + f_k * ctx             segment k: B >= min_batch_size_k

Most profiles have one segment per phase. Measured data sometimes needs a knee: DistServe fits a
small-batch and a large-batch decode line; SplitwiseSim's prefill costs more per token past
~4K batch tokens. Every coefficient is >= 0, and no segment starts below where the previous one
ends (checked on construction), so more tokens are never faster and a bigger batch is never
faster per step. Queries outside the measured range are answered and flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tandem.errors import ConfigError
from tandem.perf.instance import InstanceCostModel, InstanceSpec
from tandem.perf.ranges import MeasuredRange, MeasuredSpans, Usage, WarnOnce, range_excesses


@dataclass(frozen=True, slots=True)
class PrefillSegment:
    """``a + b * sum(L) + c * sum(L^2)`` seconds for batches of ``>= min_batch_tokens``."""

    min_batch_tokens: int
    base_s: float
    per_token_s: float
    per_token_sq_s: float

    def time_s(self, total_tokens: int, total_sq_tokens: int) -> float:
        return self.base_s + self.per_token_s * total_tokens + self.per_token_sq_s * total_sq_tokens


@dataclass(frozen=True, slots=True)
class DecodeSegment:
    """``base + per_request * B + per_context_token * ctx`` seconds for ``B >= min_batch_size``."""

    min_batch_size: int
    base_s: float
    per_request_s: float
    per_context_token_s: float


@dataclass(frozen=True)
class FittedCostModel(InstanceCostModel):
    """Closed-form cost model of one instance; coefficients come from a profile file."""

    name: str
    instance: InstanceSpec
    prefill_segments: tuple[PrefillSegment, ...]
    decode_segments: tuple[DecodeSegment, ...]
    measured_range: MeasuredRange = field(default_factory=MeasuredRange)
    _latch: WarnOnce = field(default_factory=WarnOnce, compare=False, repr=False)

    def __post_init__(self) -> None:
        coeffs = []
        for p in self.prefill_segments:
            coeffs += [p.base_s, p.per_token_s, p.per_token_sq_s]
        for d in self.decode_segments:
            coeffs += [d.base_s, d.per_request_s, d.per_context_token_s]
        if any(c < 0 for c in coeffs):
            raise ConfigError(f"cost model '{self.name}': coefficients must be >= 0")
        for label, starts in (
            ("prefill", [p.min_batch_tokens for p in self.prefill_segments]),
            ("decode", [d.min_batch_size for d in self.decode_segments]),
        ):
            if not starts or starts[0] != 1 or starts != sorted(set(starts)):
                raise ConfigError(
                    f"cost model '{self.name}': {label} segments must start at 1 and increase"
                )
        self._check_knees()

    def _check_knees(self) -> None:
        """No segment may start below the previous one's end, for any batch composition."""
        tol = 1e-12
        pairs = zip(self.prefill_segments, self.prefill_segments[1:], strict=False)
        for prev, seg in pairs:
            n = seg.min_batch_tokens
            # sum(L^2) of a batch of n tokens lies in [n, n^2]; both lines are linear in it,
            # so checking at 0 and n^2 covers every composition.
            for sq in (0, n * n):
                if seg.time_s(n, sq) < prev.time_s(n, sq) - tol:
                    raise ConfigError(
                        f"cost model '{self.name}': prefill segment at {n} tokens starts below "
                        "the previous one"
                    )
        for prev_d, seg_d in zip(self.decode_segments, self.decode_segments[1:], strict=False):
            b = seg_d.min_batch_size
            prev_base = prev_d.base_s + prev_d.per_request_s * (b - 1)
            base = seg_d.base_s + seg_d.per_request_s * b
            if seg_d.per_context_token_s < prev_d.per_context_token_s or base < prev_base - tol:
                raise ConfigError(
                    f"cost model '{self.name}': decode segment at batch {b} is faster than the "
                    "one before it"
                )

    def prefill_time_s(self, prompt_lens: Sequence[int]) -> float:
        if not prompt_lens:
            return 0.0
        total = sum(prompt_lens)
        if not self._latch.fired:  # once fired, a reason would be dropped: skip building it
            reason = self.measured_range.prefill_excess(max(prompt_lens), total)
            if reason is not None:
                self._latch.warn(self.name, reason)
        seg = self.prefill_segments[0]
        for candidate in self.prefill_segments:
            if total >= candidate.min_batch_tokens:
                seg = candidate
        return seg.time_s(total, sum(n * n for n in prompt_lens))

    def prefill_chunks_time_s(self, chunks: Sequence[tuple[int, int]]) -> float:
        """The segment of the iteration's new tokens, with ``sum(L^2)`` replaced by each chunk's
        share of its prompt's quadratic (attention) term, ``(c + k)^2 - c^2``."""
        if not chunks:
            return 0.0
        total = longest = sq = 0  # one pass: the simulator prices every prefill iteration here
        for c, k in chunks:
            total += k
            sq += k * (k + 2 * c)
            if c + k > longest:
                longest = c + k
        if not self._latch.fired:
            reason = self.measured_range.prefill_excess(longest, total)
            if reason is not None:
                self._latch.warn(self.name, reason)
        seg = self.prefill_segments[0]
        for candidate in self.prefill_segments:
            if total >= candidate.min_batch_tokens:
                seg = candidate
        return seg.time_s(total, sq)

    def decode_step_coeffs(self, batch_size: int) -> tuple[float, float]:
        reason = self.measured_range.decode_excess(batch_size)
        if reason is not None:
            self._latch.warn(self.name, reason)
        seg = self.decode_segments[0]
        for candidate in self.decode_segments:
            if batch_size >= candidate.min_batch_size:
                seg = candidate
        return seg.base_s + seg.per_request_s * batch_size, seg.per_context_token_s

    def decode_step_time_s(self, batch_size: int, total_context_tokens: int) -> float:
        reason = self.measured_range.context_excess(batch_size, total_context_tokens)
        if reason is not None:
            self._latch.warn(self.name, reason)
        return super().decode_step_time_s(batch_size, total_context_tokens)

    def kv_transfer_time_s(self, num_tokens: int) -> float:
        return self.instance.kv_transfer_time_s(num_tokens)

    def extrapolations(self, usage: Usage) -> list[str]:
        return range_excesses(self.measured_range, usage)

    def measured_spans(self) -> MeasuredSpans:
        return MeasuredSpans.of_range(self.measured_range)
