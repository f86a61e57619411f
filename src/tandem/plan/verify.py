"""Check plans in the simulator: predicted versus simulated TTFT / TPOT for candidate
``(N_P, N_D)`` pairs, and the search for the cheapest pair the simulator accepts.

"Meets the SLOs" in simulation, matching what the analytic model predicts:
- TTFT: the mean TTFT (mean-SLO variant) or the chosen percentile of TTFT is within the SLO;
- TPOT: the ``tpot_quantile`` (default 90th percentile) of per-request TPOT is within the SLO;
rejected or unfinished requests count as infinitely late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tandem.perf.base import CostModel
from tandem.sim import ClusterConfig, simulate
from tandem.workload.request import Workload
from tandem.workload.synthetic import synthetic_workload
from tandem.workload.transforms import limit, scale_rate


@dataclass(frozen=True)
class SimCheck:
    """One simulated candidate."""

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
    from tandem.workload.synthetic import FixedLength

    return synthetic_workload(
        num_requests=num_requests,
        rate_rps=rate_rps,
        input_len=FixedLength(input_len),
        output_len=FixedLength(output_len),
        seed=seed,
    )


def check(
    w: Workload, cost: CostModel, num_prefill: int, num_decode: int, crit: SimCriteria
) -> SimCheck:
    """Simulate one candidate and judge it."""
    config = ClusterConfig(
        num_prefill,
        num_decode,
        cost,
        cost,
        max_batch_size=crit.max_batch_size,
        prefill_token_budget=crit.prefill_token_budget,
    )
    r = simulate(w, config)
    done = r.completed
    ttft = np.where(done, r.first_token_s - r.arrival_s, np.inf)
    multi = r.output_tokens > 1
    tpot = np.zeros(ttft.size)
    tpot[multi] = (r.finish_s[multi] - r.first_token_s[multi]) / (r.output_tokens[multi] - 1)
    tpot = np.where(done, tpot, np.inf)
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
) -> tuple[int, int, list[SimCheck]] | None:
    """Cheapest pair the simulator accepts, by coordinate search from a starting guess: the
    fewest prefill instances with decode generous, then the fewest decode with that prefill
    (prefill and decode barely interact, so this is the cheapest pair). ``None`` if none."""
    runs: list[SimCheck] = []

    def ok(p: int, d: int) -> bool:
        c = check(w, cost, p, d, crit)
        runs.append(c)
        return c.meets

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
