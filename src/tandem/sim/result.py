"""What a simulation run produced: per-request timestamps, per-instance counters, metrics.

Timestamps are on the simulator's clock. The client sees every token ``request_overhead_s``
later (the profile's latency outside the instances: tokenisation, scheduling, network), so
every client-visible figure (``ttft_s``, ``metrics()``: TTFT, E2E, attainment, goodput)
includes it, while TPOT and ITL, differences of two client-visible times, do not change. This
is the one place the overhead is added; ``simulate``, the goodput search, the experiments and
``plan --verify`` all read these figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tandem.metrics.serving import DEFAULT_PERCENTILES, SLO, compute_metrics_arrays
from tandem.perf.ranges import Usage
from tandem.sim.itl import ItlSample
from tandem.sim.migration import MigrationStats
from tandem.sim.request import SimRequest

if TYPE_CHECKING:
    from tandem.sim.cluster import ClusterConfig
    from tandem.sim.decode import DecodeInstance
    from tandem.sim.prefill import PrefillInstance


@dataclass(frozen=True)
class SimResult:
    """Outcome of one run. Arrays are indexed by request position in the workload; rejected
    requests have NaN timestamps."""

    workload: str
    config: ClusterConfig
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    num_preemptions: np.ndarray
    #: Output tokens each request produced (equals ``output_tokens`` when it completed).
    generated_tokens: np.ndarray
    rejected: np.ndarray
    decode_busy_s: tuple[float, ...]
    prefill_busy_s: tuple[float, ...]
    decode_timelines: tuple[tuple[tuple[float, int, int], ...], ...] | None
    num_migrations: np.ndarray
    migration: MigrationStats
    #: Added to every client-visible time (see the module doc); 0 for most profiles.
    request_overhead_s: float = 0.0
    #: What the run asked of the prefill and the decode cost models (``extrapolations``).
    prefill_usage: Usage = Usage()
    decode_usage: Usage = Usage()
    #: Every inter-token gap, when the config asked for them (``record_itl``).
    itl: ItlSample | None = None
    #: Prompt tokens each request found in its prefill instance's prefix cache, when the
    #: config caches prefixes (``prefix_cache_tokens``); ``None`` otherwise.
    cached_tokens: np.ndarray | None = None

    @classmethod
    def from_run(
        cls,
        workload: str,
        requests: Sequence[SimRequest],
        rejected: Sequence[int],
        prefill: Sequence[PrefillInstance],
        decode: Sequence[DecodeInstance],
        config: ClusterConfig,
        migration: MigrationStats,
    ) -> SimResult:
        n = len(requests)
        nan = float("nan")
        mask = np.zeros(n, dtype=bool)
        mask[list(rejected)] = True
        timelines = (
            tuple(tuple(d.timeline) for d in decode if d.timeline is not None)
            if config.record_timeline
            else None
        )
        return cls(
            workload=workload,
            config=config,
            arrival_s=np.fromiter((r.arrival_s for r in requests), float, n),
            first_token_s=np.fromiter(
                (nan if r.first_token_s is None else r.first_token_s for r in requests), float, n
            ),
            finish_s=np.fromiter(
                (nan if r.finish_s is None else r.finish_s for r in requests), float, n
            ),
            prompt_tokens=np.fromiter((r.prompt_tokens for r in requests), np.int64, n),
            output_tokens=np.fromiter((r.output_tokens for r in requests), np.int64, n),
            num_preemptions=np.fromiter((r.num_preemptions for r in requests), np.int64, n),
            generated_tokens=np.fromiter((r.generated for r in requests), np.int64, n),
            rejected=mask,
            decode_busy_s=tuple(d.busy_s for d in decode),
            prefill_busy_s=tuple(p.busy_s for p in prefill),
            decode_timelines=timelines,
            num_migrations=np.fromiter((r.num_migrations for r in requests), np.int64, n),
            migration=migration,
            request_overhead_s=config.request_overhead_s,
            prefill_usage=_prefill_usage(requests, rejected, prefill),
            decode_usage=_decode_usage(decode),
            itl=(
                ItlSample.from_recorders([d.itl for d in decode if d.itl is not None])
                if config.record_itl
                else None
            ),
            cached_tokens=(
                np.fromiter((r.cached_tokens for r in requests), np.int64, n)
                if config.prefix_cache_tokens is not None
                else None
            ),
        )

    def extrapolations(self) -> list[str]:
        """Where the run used a cost model outside its measured range, one line per model:
        ``"profile 'P': prompt of 20,362 tokens above the measured max 8,192; ..."``."""
        config = self.config
        found: dict[str, list[str]] = {}
        for cost, usage in (
            (config.prefill_cost, self.prefill_usage),
            (config.decode_cost, self.decode_usage),
        ):
            found.setdefault(cost.name, []).extend(cost.extrapolations(usage))
        return [f"profile '{name}': {'; '.join(why)}" for name, why in found.items() if why]

    @property
    def completed(self) -> np.ndarray:
        return ~self.rejected & ~np.isnan(self.finish_s)

    @property
    def ttft_s(self) -> np.ndarray:
        """Per-request TTFT as the client sees it, request overhead included (NaN if none)."""
        return self.first_token_s - self.arrival_s + self.request_overhead_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Per-request TPOT (0 for a one-token request, as vLLM counts it for goodput)."""
        tpot = np.zeros(self.arrival_s.size)
        multi = self.output_tokens > 1
        tpot[multi] = (self.finish_s[multi] - self.first_token_s[multi]) / (
            self.output_tokens[multi] - 1
        )
        return tpot

    def metrics(self, slo: SLO | None = None) -> dict[str, Any]:
        """vLLM-style metrics plus ``num_completed``, ``num_preempted``, ``num_rejected`` and
        ``slo_attainment`` (rejected requests count as misses). Client-visible times include
        ``request_overhead_s``, reported as ``request_overhead_ms``."""
        done = self.completed
        overhead = self.request_overhead_s
        out = compute_metrics_arrays(
            arrival_s=self.arrival_s[done],
            first_token_s=self.first_token_s[done] + overhead,
            finish_s=self.finish_s[done] + overhead,
            prompt_tokens=self.prompt_tokens[done],
            output_tokens=self.output_tokens[done],
            slo=slo,
            num_failed=int(self.rejected.sum()),
        )
        if self.itl is not None:  # differences of client-visible times: no overhead
            out.update(self.itl.describe(DEFAULT_PERCENTILES))
        out["request_overhead_ms"] = overhead * 1000.0
        out["num_requests"] = int(self.arrival_s.size)
        out["num_completed"] = int(done.sum())
        out["num_preempted"] = int(self.num_preemptions.sum())
        out["num_rejected"] = int(self.rejected.sum())
        out.setdefault("slo_attainment", None)
        out["num_migrations"] = self.migration.num_migrations
        out["num_migrations_aborted"] = self.migration.num_migrations_aborted
        out["num_migrations_cancelled"] = self.migration.num_migrations_cancelled
        out["num_replaced"] = self.migration.num_replaced
        out["migrated_bytes"] = self.migration.migrated_bytes
        out["migration_pause_s"] = self.migration.pause_s
        if self.cached_tokens is not None:
            out.update(self.prefix_cache_stats())
        return out

    def prefix_cache_stats(self) -> dict[str, Any]:
        """With prefix caching on: prompt tokens found cached (``prefix_cached_tokens``), their
        share of the prompt tokens of the requests not rejected (``prefix_cache_hit_rate``) and
        the share of those requests that hit at all (``prefix_cache_request_hit_rate``)."""
        if self.cached_tokens is None:
            return {}
        served = ~self.rejected
        cached = self.cached_tokens[served]
        prompt = int(self.prompt_tokens[served].sum())
        return {
            "prefix_cached_tokens": int(cached.sum()),
            "prefix_cache_hit_rate": float(cached.sum() / prompt) if prompt else 0.0,
            "prefix_cache_request_hit_rate": float((cached > 0).mean()) if cached.size else 0.0,
        }


def _prefill_usage(
    requests: Sequence[SimRequest], rejected: Sequence[int], prefill: Sequence[PrefillInstance]
) -> Usage:
    skip = set(rejected)
    prompts = [r.prompt_tokens for r in requests if r.index not in skip]
    return Usage(
        min_prompt_tokens=min(prompts) if prompts else None,
        max_prompt_tokens=max(prompts) if prompts else None,
        max_prefill_batch_tokens=max((p.max_batch_tokens for p in prefill), default=0) or None,
    )


def _decode_usage(decode: Sequence[DecodeInstance]) -> Usage:
    ran = [d for d in decode if d.max_batch_run]
    if not ran:
        return Usage()
    return Usage(
        min_decode_batch_size=min(d.min_batch_run for d in ran),
        max_decode_batch_size=max(d.max_batch_run for d in ran),
        max_context_tokens_per_request=max(d.max_context_per_request for d in ran),
    )
