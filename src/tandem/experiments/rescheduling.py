"""The decode rescheduling experiment: placement and migration policies side by side.

For each workload and decode-cluster size:

1. Pick the load: the highest rate scale at which round-robin still has at least 90% of requests
   meeting the SLOs (the point where static assignment *just* copes), found by the goodput
   search. Every policy then runs at that same load.
2. Run every policy there: P99 and mean TPOT, P99 TTFT, goodput (requests/s meeting the SLOs),
   preemptions, migrations and bytes moved.
3. Optionally (``max_goodput=True``) search each policy's own highest load with >= 90%
   attainment (DistServe's goodput) and report it in requests/s; then run every policy again
   at ``ares``'s highest load (``at_ares_max``), where static assignment no longer copes.

Every load replays the same number of seconds of arrivals (``window_s``): the trace is taken
``window_s * scale`` seconds long (repeated if shorter) and then compressed ``scale`` times. So a
high load or a large cluster does not squeeze the run into a few seconds of arrivals, which would
end before memory fills and hide what placement does.

How long is long enough is set by the requests' lifetimes, not by a fixed number
(``steady_window_s``): decode memory reaches its steady level only after the requests holding
most of it have lived their lives, and on servegen-r1 those are the long answers (the
memory-weighted mean output is 7,558 tokens against a plain mean of 1,511). The window is
``lifetimes`` times the memory-weighted mean lifetime, and at least ``MIN_WINDOW_S``.

Policies (``tandem.sim.presets``, the same names as ``tandem simulate --policy``):
``round-robin`` (static), ``least-kv`` (current KV balancing), ``llumnix`` (least-kv placement +
Llumnix-style migration by current headroom), ``ares`` (predictions in the data plane from the
measured error model: predictive admission, predictive placement and migration),
``ares-oracle`` (same with true lengths: the upper bound). Baselines admit greedily (vLLM).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tandem.errors import ConfigError
from tandem.metrics.serving import SLO
from tandem.perf.base import CostModel
from tandem.sim import ClusterConfig, SimResult, simulate
from tandem.sim.goodput import find_max_rate_scale
from tandem.sim.presets import POLICY_PRESETS, with_policy
from tandem.workload import Workload
from tandem.workload.transforms import rotate, scale_rate, span

#: Load searches start near the answer (the round-robin load, or the smaller cluster's per
#: instance), so they bracket it in 25% steps: a probe at twice the answer is deep in overload,
#: and overloaded runs are the slowest to simulate.
_GROWTH = 1.25

#: The policy names; what each means lives in one table, ``tandem.sim.presets``.
POLICIES: tuple[str, ...] = tuple(POLICY_PRESETS)

#: Seeds per trace: seed ``s`` replays the trace from ``s / SEEDS_PER_TRACE`` of its length.
SEEDS_PER_TRACE = 3

#: The shortest window ``steady_window_s`` returns (the fixed window before issue 19).
MIN_WINDOW_S = 600.0
#: Memory-weighted mean lifetimes per window (``steady_window_s``).
LIFETIMES = 3.0


@dataclass(frozen=True)
class WindowEstimate:
    """How ``steady_window_s`` sized a window, for the report."""

    window_s: float
    #: Memory-weighted mean output tokens: each request weighted by the KV token-steps it
    #: holds, ``(prompt + output / 2) * output``.
    weighted_output_tokens: float
    #: Decode step time of a batch that fills the instance's memory with mean requests.
    step_s: float

    @property
    def lifetime_s(self) -> float:
        return self.weighted_output_tokens * self.step_s


def _lengths_and_full_step(
    trace: Workload, cost: CostModel, max_batch_size: int, purpose: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """The trace's output and prompt lengths, and the decode step of a batch that fills the
    memory with mean-sized requests (``(prompt + output / 2)`` tokens each, the batch limit
    permitting): what ``steady_window_s`` and ``decode_capacity_rps`` estimate from."""
    requests = trace.requests
    if not requests:
        raise ConfigError(f"the workload has no requests to {purpose}")
    out = np.fromiter((r.output_tokens for r in requests), np.float64, len(requests))
    prompt = np.fromiter((r.prompt_tokens for r in requests), np.float64, len(requests))
    context = float((prompt + out / 2).mean())
    batch = int(max(1, min(max_batch_size, cost.kv_capacity_tokens // max(1.0, context))))
    with warnings.catch_warnings():  # an estimate: the measured range is checked by the runs
        warnings.simplefilter("ignore")
        step = cost.decode_step_time_s(batch, int(batch * context))
    return out, prompt, step


def steady_window_s(
    trace: Workload,
    cost: CostModel,
    max_batch_size: int = 256,
    *,
    lifetimes: float = LIFETIMES,
    minimum_s: float = MIN_WINDOW_S,
) -> WindowEstimate:
    """A window of arrivals long enough for decode memory to reach its steady level.

    A request holds ``(prompt + output / 2) * output`` KV token-steps on average over its life;
    weighting each request's output by that gives the lifetime, in steps, of the requests that
    hold the memory. Times the decode step of a batch that fills the memory with mean-sized
    requests (the batch limit permitting), that is the memory-weighted mean lifetime; the window
    is ``lifetimes`` of them, and at least ``minimum_s``. At any load: the lifetime is a property
    of the requests and the engine, not of the arrival rate.
    """
    out, prompt, step = _lengths_and_full_step(trace, cost, max_batch_size, "size a window by")
    held = (prompt + out / 2) * out
    weighted = float((held * out).sum() / held.sum()) if held.sum() > 0 else 0.0
    window = max(minimum_s, lifetimes * weighted * step)
    return WindowEstimate(window, weighted, step)


def decode_capacity_rps(
    trace: Workload, cost: CostModel, num_decode: int, max_batch_size: int = 256
) -> float:
    """Requests per second that ``num_decode`` instances' KV memory sustains at best: each holds
    ``kv_capacity_tokens``, a request occupies ``(prompt + output / 2) * output`` token-steps on
    average, and a step of a batch that fills memory with mean requests takes what the profile
    says. No policy reaches it (memory is never all in use); load searches start from a share
    of it instead of a rate scale that, for a large model, can be many times past the answer
    (and overloaded runs are the slowest to simulate)."""
    out, prompt, step = _lengths_and_full_step(
        trace, cost, max_batch_size, "estimate a capacity by"
    )
    held = float(((prompt + out / 2) * out).mean())
    return num_decode * cost.kv_capacity_tokens / max(held * step, 1e-12)


@dataclass(frozen=True)
class Setup:
    """One cell of the experiment: a trace on a cluster under SLOs, replayed for ``window_s``
    seconds of arrivals at any load."""

    trace: Workload
    cost: CostModel
    num_prefill: int
    num_decode: int
    slo: SLO
    window_s: float
    #: Chunked prefill in the prefill instances (``ClusterConfig.chunk_tokens``); ``None``: off.
    chunk_tokens: int | None = None
    #: Prefix caching in the prefill instances (``ClusterConfig.prefix_cache_tokens``);
    #: ``None``: off.
    prefix_cache_tokens: int | None = None
    #: Seeds the run: the trace is replayed from ``seed / SEEDS_PER_TRACE`` of its length on
    #: (``rotate``: another sample of the same trace), and the simulator's random draws
    #: (prediction errors) take it as their seed. 0: the trace from its start.
    seed: int = 0

    @cached_property
    def _trace(self) -> Workload:
        if self.seed == 0:
            return self.trace
        return rotate(self.trace, self.trace.duration_s * (self.seed / SEEDS_PER_TRACE % 1.0))

    def at(self, scale: float) -> Workload:
        """``window_s`` seconds of arrivals at ``scale`` times the trace's rate."""
        return scale_rate(span(self._trace, self.window_s * scale), scale)

    @property
    def base_rate_rps(self) -> float:
        return self.trace.rate_rps


def config_for(setup: Setup, policy: str, record_timeline: bool = False) -> ClusterConfig:
    """The cluster of ``setup`` running the decode policy preset ``policy``."""
    base = ClusterConfig(
        setup.num_prefill,
        setup.num_decode,
        setup.cost,
        setup.cost,
        record_timeline=record_timeline,
        chunk_tokens=setup.chunk_tokens,
        seed=setup.seed,
        prefix_cache_tokens=setup.prefix_cache_tokens,
    )
    return with_policy(base, policy)


def attainment_at(setup: Setup, policy: str) -> Callable[[float], float]:
    config = config_for(setup, policy)

    def run(scale: float) -> float:
        result = simulate(setup.at(scale), config)
        return float(result.metrics(setup.slo)["slo_attainment"])

    return run


def row(result: SimResult, slo: SLO, rate_rps: float) -> dict[str, Any]:
    """One policy's figures. ``goodput_rps`` is the offered rate times the share of requests
    meeting both SLOs (requests/s meeting SLOs at this load); ``request_goodput_rps`` is
    vLLM's good requests over first arrival to last finish, which a long drain tail lowers."""
    m = result.metrics(slo)
    return {
        "p99_tpot_ms": m["p99_tpot_ms"],
        "mean_tpot_ms": m["mean_tpot_ms"],
        "p99_ttft_ms": m["p99_ttft_ms"],
        "slo_attainment": m["slo_attainment"],
        "goodput_rps": m["slo_attainment"] * rate_rps,
        "request_goodput_rps": m["request_goodput"],
        "num_preempted": m["num_preempted"],
        "num_migrations": m["num_migrations"],
        "num_replaced": m["num_replaced"],
        "migrated_bytes": m["migrated_bytes"],
        "migration_pause_s": m["migration_pause_s"],
    }


def run_cell(
    setup: Setup,
    policies: list[str],
    *,
    max_goodput: bool = False,
    start_scale: float = 1.0,
    timelines: dict[str, SimResult] | None = None,
    rel_tol: float = 0.05,
) -> dict[str, Any]:
    """All policies at the load where round-robin just meets 90% attainment (and, with
    ``max_goodput``, each policy's highest such load and all policies at ``ares``'s). The load
    searches stop when they bracket the answer within ``rel_tol`` (a share of it)."""
    base = find_max_rate_scale(
        attainment_at(setup, "round-robin"), start=start_scale, rel_tol=rel_tol, growth=_GROWTH
    )
    scale = base.rate_scale if base.rate_scale > 0 else start_scale
    out: dict[str, Any] = _at_load(setup, policies, scale, timelines)
    # Capped: round-robin met 90% at every load tried, so this load is the search's cap, not
    # round-robin's 90% load (every policy may still meet the SLOs here).
    out["rate_scale_capped"] = base.capped
    if not max_goodput:
        return out
    for policy in policies:
        found = find_max_rate_scale(
            attainment_at(setup, policy), start=scale, rel_tol=rel_tol, growth=_GROWTH
        )
        out["policies"][policy]["max_goodput_rps"] = found.rate_scale * setup.base_rate_rps
        out["policies"][policy]["max_goodput_scale"] = found.rate_scale
        out["policies"][policy]["max_goodput_capped"] = found.capped
    top = [p for p in ("ares", "ares-oracle") if p in policies]
    if top:
        high = out["policies"][top[0]]["max_goodput_scale"]
        if high > scale:
            out["at_ares_max"] = _at_load(setup, policies, high, None)
    return out


def _at_load(
    setup: Setup,
    policies: list[str],
    scale: float,
    timelines: dict[str, SimResult] | None,
) -> dict[str, Any]:
    workload = setup.at(scale)
    rate = workload.rate_rps
    out: dict[str, Any] = {
        "rate_scale": scale,
        "rate_rps": rate,
        "num_requests": len(workload),
        "policies": {},
    }
    for policy in policies:
        record = timelines is not None and policy in ("round-robin", "ares")
        result = simulate(workload, config_for(setup, policy, record_timeline=record))
        if timelines is not None and record:
            timelines[policy] = result
        out["policies"][policy] = row(result, setup.slo, rate)
    return out
