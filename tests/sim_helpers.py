"""Shared builders for the simulator tests: a hand-written cost model, clusters, workloads."""

from __future__ import annotations

from tandem.perf.linear import LinearCostModel
from tandem.sim import ClusterConfig
from tandem.workload.synthetic import LognormalLength, UniformLength, synthetic_workload


def cost(kv_capacity: int = 100_000) -> LinearCostModel:
    return LinearCostModel(
        name="test",
        prefill_base_s=0.01,
        prefill_per_token_s=1e-4,
        prefill_per_token_sq_s=1e-8,
        decode_base_s=0.005,
        decode_per_request_s=1e-4,
        decode_per_context_token_s=1e-6,
        kv_capacity_tokens=kv_capacity,
        kv_bytes_per_token=1000,
        link_bandwidth_bytes_per_s=1e7,
        link_latency_s=0.001,
    )


def config(kv_capacity: int = 100_000, **kw: object) -> ClusterConfig:
    c = cost(kv_capacity)
    args: dict = {"num_prefill": 1, "num_decode": 1, "prefill_cost": c, "decode_cost": c}
    args.update(kw)
    return ClusterConfig(**args)


def busy_workload(n: int = 400, rate: float = 40.0, seed: int = 3):
    return synthetic_workload(
        num_requests=n,
        rate_rps=rate,
        input_len=UniformLength(50, 400),
        output_len=LognormalLength(150, 1.2, max_tokens=1500),
        seed=seed,
    )
