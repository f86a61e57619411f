"""The functional form the field uses (DistServe, Splitwise), with explicit coefficients.

prefill(L_1..L_n) = a + b * sum(L) + c * sum(L^2)         (seconds)
chunked iteration  = a + b * sum(k) + c * sum((p + k)^2 - p^2)   (chunks of k new tokens after p
                     computed ones: the quadratic term is attention, which a chunk pays against
                     all the context before it, so a prompt's chunks sum to its unchunked cost)
decode_step(B, ctx) = d + e * B + f * ctx                 (seconds)
kv_transfer(n) = latency + n * kv_bytes_per_token / link_bandwidth

Fitted profiles produce instances of this class; tests and what-if studies write them by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tandem.errors import ConfigError
from tandem.perf.base import CostModel


@dataclass(frozen=True)
class LinearCostModel(CostModel):
    """A cost model whose prefill is quadratic and decode step linear, coefficients in seconds."""

    name: str
    prefill_base_s: float
    prefill_per_token_s: float
    prefill_per_token_sq_s: float
    decode_base_s: float
    decode_per_request_s: float
    decode_per_context_token_s: float
    kv_capacity_tokens: int
    kv_bytes_per_token: int
    link_bandwidth_bytes_per_s: float = 25e9
    link_latency_s: float = 1e-4

    def __post_init__(self) -> None:
        for field_name in (
            "prefill_base_s",
            "prefill_per_token_s",
            "prefill_per_token_sq_s",
            "decode_base_s",
            "decode_per_request_s",
            "decode_per_context_token_s",
            "link_latency_s",
        ):
            if getattr(self, field_name) < 0:
                raise ConfigError(f"cost model '{self.name}': {field_name} must be >= 0")
        if self.kv_capacity_tokens <= 0 or self.kv_bytes_per_token <= 0:
            raise ConfigError(
                f"cost model '{self.name}': kv_capacity_tokens and kv_bytes_per_token must be > 0"
            )
        if self.link_bandwidth_bytes_per_s <= 0:
            raise ConfigError(f"cost model '{self.name}': link_bandwidth_bytes_per_s must be > 0")

    def prefill_time_s(self, prompt_lens: Sequence[int]) -> float:
        if not prompt_lens:
            return 0.0
        total = sum(prompt_lens)
        total_sq = sum(n * n for n in prompt_lens)
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * total
            + self.prefill_per_token_sq_s * total_sq
        )

    def prefill_chunks_time_s(self, chunks: Sequence[tuple[int, int]]) -> float:
        if not chunks:
            return 0.0
        total = sum(k for _, k in chunks)
        attention = sum(k * (k + 2 * c) for c, k in chunks)
        return (
            self.prefill_base_s
            + self.prefill_per_token_s * total
            + self.prefill_per_token_sq_s * attention
        )

    def decode_step_coeffs(self, batch_size: int) -> tuple[float, float]:
        return (
            self.decode_base_s + self.decode_per_request_s * batch_size,
            self.decode_per_context_token_s,
        )

    def kv_transfer_time_s(self, num_tokens: int) -> float:
        if num_tokens <= 0:
            return 0.0
        return self.link_latency_s + num_tokens * self.kv_bytes_per_token / (
            self.link_bandwidth_bytes_per_s
        )
