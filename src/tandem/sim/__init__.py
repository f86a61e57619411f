"""Discrete-event simulator of a P/D-disaggregated cluster, driving the pure control plane.

- ``request``: a request's mutable state during a run.
- ``events``: the event queue, ordered by (time, priority, sequence number).
- ``prefill``: prefill instances (FCFS, batched up to a token budget).
- ``decode``: decode instances (continuous batching, KV capacity, preemption), advanced in
  closed form between batch changes.
- ``cluster``: the simulator that wires workload, instances, links and policies.
- ``result``: per-request outcomes and vLLM-style metrics.
"""

from tandem.sim.cluster import ClusterConfig, Simulator, simulate
from tandem.sim.result import SimResult

__all__ = ["ClusterConfig", "SimResult", "Simulator", "simulate"]
