"""Roofline cost model: times from ``ModelSpec`` x ``HardwareSpec`` for unmeasured instances.

Each phase is the sum of its kernels, each kernel the slower of its compute time (FLOPs over
peak x efficiency) and its memory time (bytes over bandwidth x efficiency):

- projections (QKV, O, MLP) of every layer: 2 FLOPs per parameter per token; weights read once;
- prefill attention: 2 x sum(L^2) x heads x head_dim FLOPs per layer (causal half of QK^T and PV);
- decode attention: the batch's KV cache read once (memory bound), so linear in context tokens;
- LM head on the last token of each sequence;
- two ring all-reduces of the hidden states per layer when tensor-parallel;
- a fixed per-iteration overhead (scheduling, sampling, kernel launches).

The efficiency factors are stated, not fitted (``RooflineEfficiency``); see docs/perf_model.md
for how far this lands from measured iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tandem.errors import ConfigError
from tandem.perf.instance import InstanceCostModel, InstanceSpec


@dataclass(frozen=True, slots=True)
class RooflineEfficiency:
    """Fractions of peak that real kernels reach, plus fixed costs (seconds)."""

    #: Dense GEMM fraction of peak BF16 FLOP/s (vLLM prefill MFU is typically 0.5-0.7).
    matmul_flops: float = 0.6
    #: Attention kernels' fraction of peak FLOP/s (FlashAttention-2/3 reach 0.4-0.7).
    attention_flops: float = 0.5
    #: Fraction of HBM bandwidth reached by memory-bound kernels (aiconfigurator uses 0.8).
    memory_bandwidth: float = 0.8
    #: Fraction of NVLink bandwidth reached by NCCL all-reduce.
    link_bandwidth: float = 0.7
    #: Latency of one all-reduce (aiconfigurator's p2p latency is 10 us).
    all_reduce_latency_s: float = 10e-6
    #: Fixed cost of one iteration: scheduler, sampling, launches (CUDA graphs for decode).
    iteration_overhead_s: float = 3e-3

    def __post_init__(self) -> None:
        for name in ("matmul_flops", "attention_flops", "memory_bandwidth", "link_bandwidth"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"roofline efficiency {name} must be in (0, 1], got {value}")
        if self.all_reduce_latency_s < 0 or self.iteration_overhead_s < 0:
            raise ConfigError("roofline latencies must be >= 0")


@dataclass(frozen=True)
class RooflineCostModel(InstanceCostModel):
    """Speed-of-light times scaled by stated efficiencies; no measured range, no warnings."""

    name: str
    instance: InstanceSpec
    efficiency: RooflineEfficiency = field(default_factory=RooflineEfficiency)

    # -- kernels (seconds, whole instance) ---------------------------------------------------

    def _kernel_s(self, flops: float, num_bytes: float, flops_eff: float) -> float:
        hw, tp = self.instance.hardware, self.instance.tensor_parallel
        compute_s = flops / (tp * hw.peak_bf16_flops * flops_eff)
        bandwidth = tp * hw.hbm_bandwidth_bytes_per_s * self.efficiency.memory_bandwidth
        memory_s = num_bytes / bandwidth
        return max(compute_s, memory_s)

    def _projections_s(self, num_tokens: int) -> float:
        m = self.instance.model
        params = m.matmul_params_per_layer * m.num_layers
        return self._kernel_s(
            2.0 * num_tokens * params, params * m.dtype_bytes, self.efficiency.matmul_flops
        )

    def _lm_head_s(self, num_seqs: int) -> float:
        m = self.instance.model
        params = m.hidden_size * m.vocab_size
        return self._kernel_s(
            2.0 * num_seqs * params, params * m.dtype_bytes, self.efficiency.matmul_flops
        )

    def _all_reduce_s(self, num_tokens: int) -> float:
        tp = self.instance.tensor_parallel
        if tp == 1:
            return 0.0
        m, hw, eff = self.instance.model, self.instance.hardware, self.efficiency
        message_bytes = num_tokens * m.hidden_size * m.dtype_bytes
        ring_bytes = 2.0 * (tp - 1) / tp * message_bytes
        one_s = eff.all_reduce_latency_s + ring_bytes / (
            hw.intra_node_bandwidth_bytes_per_s * eff.link_bandwidth
        )
        return 2 * m.num_layers * one_s

    # -- CostModel ---------------------------------------------------------------------------

    def prefill_time_s(self, prompt_lens: Sequence[int]) -> float:
        if not prompt_lens:
            return 0.0
        m = self.instance.model
        num_tokens = sum(prompt_lens)
        attention_flops = (
            2.0 * sum(n * n for n in prompt_lens) * m.num_attention_heads * m.head_dim
        ) * m.num_layers
        attention_s = self._kernel_s(attention_flops, 0.0, self.efficiency.attention_flops)
        return (
            self.efficiency.iteration_overhead_s
            + self._projections_s(num_tokens)
            + attention_s
            + self._lm_head_s(len(prompt_lens))
            + self._all_reduce_s(num_tokens)
        )

    def prefill_chunks_time_s(self, chunks: Sequence[tuple[int, int]]) -> float:
        """As ``prefill_time_s`` over the new tokens, with each chunk's attention against its
        computed context: ``(c + k)^2 - c^2`` query-key pairs in place of ``k^2``."""
        if not chunks:
            return 0.0
        m = self.instance.model
        num_tokens = sum(k for _, k in chunks)
        attention_flops = (
            2.0 * sum(k * (k + 2 * c) for c, k in chunks) * m.num_attention_heads * m.head_dim
        ) * m.num_layers
        attention_s = self._kernel_s(attention_flops, 0.0, self.efficiency.attention_flops)
        return (
            self.efficiency.iteration_overhead_s
            + self._projections_s(num_tokens)
            + attention_s
            + self._lm_head_s(len(chunks))
            + self._all_reduce_s(num_tokens)
        )

    def decode_step_coeffs(self, batch_size: int) -> tuple[float, float]:
        m, hw, eff = self.instance.model, self.instance.hardware, self.efficiency
        tp = self.instance.tensor_parallel
        base_s = (
            eff.iteration_overhead_s
            + self._projections_s(batch_size)
            + self._lm_head_s(batch_size)
            + self._all_reduce_s(batch_size)
        )
        # Per context token: its K and V are read once; QK^T and PV cost 4 FLOPs per q-dim.
        memory_s = m.kv_bytes_per_token / (tp * hw.hbm_bandwidth_bytes_per_s * eff.memory_bandwidth)
        flops = 4.0 * m.num_attention_heads * m.head_dim * m.num_layers
        compute_s = flops / (tp * hw.peak_bf16_flops * eff.attention_flops)
        return base_s, max(memory_s, compute_s)

    def kv_transfer_time_s(self, num_tokens: int) -> float:
        return self.instance.kv_transfer_time_s(num_tokens)
