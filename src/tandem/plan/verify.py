"""Check plans in the simulator: predicted versus simulated TTFT / TPOT for candidate
``(N_P, N_D)`` pairs, and the search for the cheapest pair the simulator accepts.

"Meets the SLOs" in simulation, matching what the analytic model predicts:
- TTFT: the mean TTFT (mean-SLO variant) or the chosen percentile of TTFT is within the SLO;
  the simulator's TTFT (queue + prefill + decode-memory wait + KV transfer + the profile's
  ``request_overhead_s``, added by ``SimResult`` as for every simulated figure);
- TPOT: the ``tpot_quantile`` (default 90th percentile) of per-request TPOT is within the SLO;
rejected or unfinished requests count as infinitely late.

Steady state (the method): a run is sized by *duration*, not by a fixed request count. A
request lives in decode for about ``L_out x TPOT`` (its "lifetime"); the run spans a warm-up of
``WARMUP_LIFETIMES`` lifetimes, a judged window of at least ``WINDOW_LIFETIMES`` lifetimes
(and ``MIN_WINDOW_REQUESTS`` requests), and one more lifetime of arrivals so the judged
requests finish under full load. Only requests *arriving* in the window are judged. A short
run at high load otherwise ends while decode batches are still filling, which makes a plan
look cheaper than it is in steady state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tandem.perf.base import CostModel
from tandem.sim import ClusterConfig, simulate
from tandem.workload.request import Workload
from tandem.workload.synthetic import FixedLength, synthetic_workload
from tandem.workload.transforms import limit, scale_rate

WARMUP_LIFETIMES = 2.0
WINDOW_LIFETIMES = 8.0
MIN_WINDOW_REQUESTS = 2000
MAX_REQUESTS = 30_000


@dataclass(frozen=True)
class SimCheck:
    """One simulated candidate (statistics over the judged requests)."""

    num_prefill: int
    num_decode: int
    ttft_s: float
    tpot_s: float
    attainment: float
    meets: bool


@dataclass(frozen=True)
class SimCriteria:
    ttft_slo_s: float
    tpot_slo_s: float
    ttft_percentile: float | None = None
    tpot_quantile: float = 0.9
    max_batch_size: int = 256
    prefill_token_budget: int = 8192
    #: Chunked prefill in the simulations (``ClusterConfig.chunk_tokens``); ``None``: off.
    chunk_tokens: int | None = None
    #: Prefix caching in the simulations (``ClusterConfig.prefix_cache_tokens``); ``None``: off.
    prefix_cache_tokens: int | None = None


@dataclass(frozen=True)
class RunLength:
    """How many requests to simulate, and which arrivals (seconds after the first) to judge."""

    num_requests: int
    judge_from_s: float
    judge_until_s: float


def steady_run_length(
    rate_rps: float,
    lifetime_s: float,
    *,
    max_requests: int = MAX_REQUESTS,
    min_window_requests: int = MIN_WINDOW_REQUESTS,
) -> RunLength:
    """Warm-up, judged window and tail sized by the decode lifetime (see the module doc). When
    that needs more than ``max_requests``, the window shrinks first, then the warm-up."""
    life = max(lifetime_s, 0.0)
    warmup = WARMUP_LIFETIMES * life
    window = max(WINDOW_LIFETIMES * life, min_window_requests / rate_rps)
    span = max_requests / rate_rps
    if warmup + window + life > span:
        # Keep the proportions 2 : 8 : 1 when the cap binds.
        scale = span / (warmup + window + life)
        warmup, window = warmup * scale, window * scale
        life *= scale
    n = max(2, math.ceil(rate_rps * (warmup + window + life)))
    return RunLength(min(n, max(2, max_requests)), warmup, warmup + window)


def verification_workload(
    rate_rps: float,
    num_requests: int,
    *,
    source: Workload | None = None,
    input_len: int = 0,
    output_len: int = 0,
    seed: int = 0,
) -> Workload:
    """The first ``num_requests`` of ``source`` rescaled to ``rate_rps``, or Poisson arrivals
    of fixed-length requests."""
    if source is not None:
        w = limit(source, num_requests)
        rate = (len(w) - 1) / w.duration_s if w.duration_s > 0 else rate_rps
        return scale_rate(w, rate_rps / rate)
    return synthetic_workload(
        num_requests=num_requests,
        rate_rps=rate_rps,
        input_len=FixedLength(input_len),
        output_len=FixedLength(output_len),
        seed=seed,
    )


def check(
    w: Workload,
    cost: CostModel,
    num_prefill: int,
    num_decode: int,
    crit: SimCriteria,
    window: RunLength | None = None,
) -> SimCheck:
    """Simulate one candidate and judge the requests arriving in ``window`` (all if ``None``)."""
    config = ClusterConfig(
        num_prefill,
        num_decode,
        cost,
        cost,
        max_batch_size=crit.max_batch_size,
        prefill_token_budget=crit.prefill_token_budget,
        chunk_tokens=crit.chunk_tokens,
        prefix_cache_tokens=crit.prefix_cache_tokens,
    )
    r = simulate(w, config)
    done = r.completed
    ttft = np.where(done, r.ttft_s, np.inf)  # includes the profile's request overhead
    tpot = np.where(done, r.tpot_s, np.inf)
    if window is not None and r.arrival_s.size:
        t = r.arrival_s - r.arrival_s.min()
        judged = (t >= window.judge_from_s) & (t < window.judge_until_s)
        if judged.any():
            ttft, tpot = ttft[judged], tpot[judged]
    ttft_v = (
        float(ttft.mean())
        if crit.ttft_percentile is None
        else float(np.quantile(ttft, crit.ttft_percentile / 100.0))
    )
    tpot_v = float(np.quantile(tpot, crit.tpot_quantile))
    good = (ttft <= crit.ttft_slo_s) & (tpot <= crit.tpot_slo_s)
    return SimCheck(
        num_prefill,
        num_decode,
        ttft_v,
        tpot_v,
        float(good.mean()),
        ttft_v <= crit.ttft_slo_s and tpot_v <= crit.tpot_slo_s,
    )


def cheapest_verified(
    w: Workload,
    cost: CostModel,
    crit: SimCriteria,
    start_prefill: int,
    start_decode: int,
    max_instances: int = 64,
    window: RunLength | None = None,
) -> tuple[int, int, list[SimCheck]] | None:
    """Cheapest pair the simulator accepts, by coordinate search from a starting guess: the
    fewest prefill instances with decode generous, then the fewest decode with that prefill
    (prefill and decode barely interact, so this is the cheapest pair). ``None`` if none.
    Every simulated pair is returned, in the order tried."""
    runs: list[SimCheck] = []
    seen: dict[tuple[int, int], SimCheck] = {}

    def ok(p: int, d: int) -> bool:
        if (p, d) not in seen:
            seen[p, d] = check(w, cost, p, d, crit, window)
            runs.append(seen[p, d])
        return seen[p, d].meets

    def smallest(f: Callable[[int], bool], start: int) -> int | None:
        n = max(1, start)
        if f(n):
            while n > 1 and f(n - 1):
                n -= 1
            return n
        while n < max_instances:
            n += 1
            if f(n):
                return n
        return None

    generous_d = max(start_decode * 2, start_decode + 3)
    p = smallest(lambda n: ok(n, generous_d), start_prefill)
    if p is None:
        return None
    d = smallest(lambda n: ok(p, n), start_decode)
    if d is None:
        return None
    return p, d, runs
