"""An instance: one model on ``tensor_parallel`` GPUs of one hardware type.

The instance owns the memory arithmetic (weights, KV bytes per token, KV capacity) and the KV
link, which are the same whatever cost model times its compute.

KV capacity = tensor_parallel x HBM - weights - activation reserve, where the reserve is a
fraction of the instance's HBM (activations, CUDA graphs, allocator slack, NCCL buffers; vLLM's
default ``gpu_memory_utilization=0.9`` leaves 10%).
"""

from __future__ import annotations

from dataclasses import dataclass

from tandem.errors import ConfigError
from tandem.perf.base import CostModel
from tandem.perf.specs import HardwareSpec, ModelSpec

DEFAULT_ACTIVATION_RESERVE_FRACTION = 0.10


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """Model x hardware x tensor-parallel degree, with the memory kept back for activations."""

    model: ModelSpec
    hardware: HardwareSpec
    tensor_parallel: int
    activation_reserve_fraction: float = DEFAULT_ACTIVATION_RESERVE_FRACTION

    def __post_init__(self) -> None:
        self.model.check_tensor_parallel(self.tensor_parallel)
        if not 0.0 <= self.activation_reserve_fraction < 1.0:
            raise ConfigError(
                "activation_reserve_fraction must be in [0, 1), got "
                f"{self.activation_reserve_fraction}"
            )
        if self.kv_capacity_bytes <= 0:
            raise ConfigError(
                f"{self.model.name} ({self.model.weight_bytes / 1e9:.1f} GB of weights) leaves "
                f"no room for KV cache on {self.tensor_parallel} x {self.hardware.name} with "
                f"{self.activation_reserve_fraction:.0%} reserved; raise the tensor-parallel "
                "degree"
            )

    @property
    def name(self) -> str:
        return f"{self.model.name}_{self.hardware.name}_tp{self.tensor_parallel}"

    @property
    def hbm_bytes(self) -> int:
        return self.tensor_parallel * self.hardware.hbm_capacity_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """KV bytes of one token summed over the instance's GPUs (each holds 1/TP of it)."""
        return self.model.kv_bytes_per_token

    @property
    def kv_capacity_bytes(self) -> int:
        reserve = int(self.activation_reserve_fraction * self.hbm_bytes)
        return self.hbm_bytes - self.model.weight_bytes - reserve

    @property
    def kv_capacity_tokens(self) -> int:
        return max(0, self.kv_capacity_bytes // self.kv_bytes_per_token)

    @property
    def kv_link_bandwidth_bytes_per_s(self) -> float:
        """Every GPU sends its own KV shard over its own NIC, so bandwidth adds up over TP."""
        return self.tensor_parallel * self.hardware.kv_link_bandwidth_bytes_per_s

    @property
    def kv_link_latency_s(self) -> float:
        return self.hardware.kv_link_latency_s

    def kv_transfer_time_s(self, num_tokens: int) -> float:
        """Link latency plus the KV bytes of ``num_tokens`` over the instance's link bandwidth."""
        if num_tokens <= 0:
            return 0.0
        return self.kv_link_latency_s + (
            num_tokens * self.kv_bytes_per_token / self.kv_link_bandwidth_bytes_per_s
        )


class InstanceCostModel(CostModel):
    """A cost model of one ``InstanceSpec``, whose KV numbers come from that spec."""

    instance: InstanceSpec

    @property
    def kv_capacity_tokens(self) -> int:  # type: ignore[override]
        return self.instance.kv_capacity_tokens

    @property
    def kv_bytes_per_token(self) -> int:  # type: ignore[override]
        return self.instance.kv_bytes_per_token
