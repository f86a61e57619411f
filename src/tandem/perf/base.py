"""The one cost-model interface that the simulator, the planner and the rescheduler ask.

An instance is model x hardware x tensor-parallel degree; a ``CostModel`` answers, for one
instance:

- how long a prefill batch takes (``prefill_time_s``), and one chunked-prefill iteration made
  of chunks of prompts with part of their context already computed (``prefill_chunks_time_s``);
- how long one decode step takes for a batch (``decode_step_time_s``). At a fixed batch size the
  step time must be *linear in the total context tokens* of the batch (``decode_step_coeffs``):
  the simulator advances a decode batch in closed form between events using that line;
- how long copying the KV cache of ``n`` tokens to another instance takes;
- how many tokens of KV cache fit (``kv_capacity_tokens``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.perf.ranges import MeasuredSpans, Usage


class CostModel(ABC):
    """Time and memory of one serving instance. Implementations are immutable."""

    #: Human-readable name (the profile name for built-in profiles).
    name: str
    #: KV-cache tokens that fit on the instance after weights and activation reserve.
    kv_capacity_tokens: int
    #: Bytes of KV cache per token (all layers, K and V) on the instance.
    kv_bytes_per_token: int

    @abstractmethod
    def prefill_time_s(self, prompt_lens: Sequence[int]) -> float:
        """Seconds to prefill one batch made of prompts with these lengths (tokens)."""

    def prefill_chunks_time_s(self, chunks: Sequence[tuple[int, int]]) -> float:
        """Seconds for one chunked-prefill iteration: each chunk is ``(context_tokens,
        new_tokens)``, ``new_tokens`` of a prompt whose first ``context_tokens`` were computed
        in earlier iterations (their KV is read, not recomputed).

        With every context 0 this is ``prefill_time_s`` of the new tokens. This default prices a
        continued chunk by the marginal cost of its prompt, ``T(c + k) - T(c)`` with ``T`` one
        prompt's time, so a prompt's chunks sum to its unchunked time less the per-iteration
        base of the later iterations; the closed-form models override it with their context
        (attention) term."""
        fresh = [k for c, k in chunks if c == 0 and k > 0]
        time_s = self.prefill_time_s(fresh) if fresh else 0.0
        for c, k in chunks:
            if c > 0 and k > 0:
                time_s += self.prefill_time_s([c + k]) - self.prefill_time_s([c])
        return time_s

    @abstractmethod
    def decode_step_coeffs(self, batch_size: int) -> tuple[float, float]:
        """``(base_s, per_context_token_s)`` so that one decode step of a batch of
        ``batch_size`` requests holding ``ctx`` context tokens in total takes
        ``base_s + per_context_token_s * ctx`` seconds."""

    @abstractmethod
    def kv_transfer_time_s(self, num_tokens: int) -> float:
        """Seconds to copy the KV cache of ``num_tokens`` tokens between two instances
        (link latency plus bytes over link bandwidth)."""

    def request_overhead_s(self) -> float:
        """Fixed latency every request sees before its first token that does not occupy the
        instance (tokenisation, scheduling, network). 0 unless the profile measured it."""
        return 0.0

    def decode_step_time_s(self, batch_size: int, total_context_tokens: int) -> float:
        """Seconds for one decode step of ``batch_size`` requests with this much context."""
        if batch_size <= 0:
            return 0.0
        base_s, slope_s = self.decode_step_coeffs(batch_size)
        return base_s + slope_s * total_context_tokens

    def extrapolations(self, usage: Usage) -> list[str]:
        """How ``usage`` leaves the range the model was measured on, one phrase each; empty
        when it stays inside, or when the model has no measured range (roofline)."""
        return []

    def measured_spans(self) -> MeasuredSpans:
        """What was measured, per quantity a plot can put on an axis (for shading the rest);
        unlimited when the model has no measured range (roofline)."""
        from tandem.perf.ranges import MeasuredSpans

        return MeasuredSpans()
