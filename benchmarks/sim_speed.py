"""Simulator speed: simulated requests per wall-clock second, and fast-forward vs exact.

1. 1,000,000 requests (azure-conv replayed back to back) on 32 prefill + 32 decode instances,
   fast-forward mode: requests/s of wall time for the simulation itself (workload building
   excluded).
2. The fast-forward / exact (token-by-token) speedup on a smaller run of the same trace.
3. A 256 prefill + 256 decode cluster runs (its rate is printed too).

Last line: ``requests_per_s=<number> speedup_vs_exact=<number>``.
Usage: ``python benchmarks/sim_speed.py [--requests N] [--profile NAME]``.

``--chunk-tokens N`` measures instead the speed with chunked prefill on (chunks of N tokens)
against off, on the 32P32D setup of part 1, in one process: ``--rounds`` alternating off/on
pairs; last line ``chunked_over_off=<median on speed / median off speed>``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import replace

from tandem.perf.registry import get_profile
from tandem.sim import ClusterConfig, simulate
from tandem.workload import load_workload
from tandem.workload.transforms import limit, repeat, scale_rate


def timed_run(workload, config):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = simulate(workload, config)
    return result, time.perf_counter() - start


def compare_chunked(workload, config, chunk_tokens: int, rounds: int) -> None:  # noqa: ANN001
    """Alternate off/on runs (the machine's load drifts; alternating spreads it over both)."""
    chunked = replace(config, chunk_tokens=chunk_tokens)
    speeds: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds):
        for label, cfg in (
            (("off", config), ("on", chunked))
            if i % 2 == 0
            else (
                ("on", chunked),
                ("off", config),
            )
        ):
            _, seconds = timed_run(workload, cfg)
            speeds[label].append(len(workload) / seconds)
            print(f"round {i + 1} chunked {label}: {seconds:.1f} s, {speeds[label][-1]:,.0f} req/s")
    ratio = statistics.median(speeds["on"]) / statistics.median(speeds["off"])
    print(f"chunked_over_off={ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--profile", default="llama3-8b_a100_tp1")
    parser.add_argument("--exact-requests", type=int, default=20_000)
    parser.add_argument("--chunk-tokens", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    warnings.simplefilter("ignore")  # out-of-measured-range notes are not the point here
    cost = get_profile(args.profile)
    base = load_workload("azure-conv")
    copies = -(-args.requests // len(base))
    # 32P32D serve ~16x the trace's rate (5.5 req/s) without saturating.
    big = scale_rate(limit(repeat(base, copies), args.requests), 16.0)
    config = ClusterConfig(32, 32, cost, cost, placement="round-robin")
    if args.chunk_tokens is not None:
        compare_chunked(big, config, args.chunk_tokens, args.rounds)
        return
    result, seconds = timed_run(big, config)
    m = result.metrics()
    rps = len(big) / seconds
    print(
        f"32P32D round-robin {len(big):,} requests: {seconds:.1f} s wall, "
        f"{rps:,.0f} simulated requests/s; completed {m['num_completed']:,}, "
        f"p99 TPOT {m['p99_tpot_ms']:.1f} ms"
    )
    # least-kv reads every decode instance's KV "as of now" per placement: slower per request.
    part = limit(big, min(len(big), 200_000))
    _, kv_seconds = timed_run(part, ClusterConfig(32, 32, cost, cost, placement="least-kv"))
    print(f"32P32D least-kv {len(part):,} requests: {len(part) / kv_seconds:,.0f} requests/s")

    # Same per-instance load as the big run (rate x2 on 4P4D = x16 on 32P32D).
    small = scale_rate(limit(base, args.exact_requests), 2.0)
    small_config = ClusterConfig(4, 4, cost, cost, placement="least-kv")
    fast, fast_s = timed_run(small, small_config)
    exact_config = ClusterConfig(4, 4, cost, cost, placement="least-kv", exact=True)
    exact, exact_s = timed_run(small, exact_config)
    drift = float(abs(fast.finish_s - exact.finish_s).max())
    speedup = exact_s / fast_s
    print(
        f"4P4D {len(small):,} requests: fast {fast_s:.2f} s, exact {exact_s:.2f} s, "
        f"speedup {speedup:.1f}x, max |finish difference| {drift:.2e} s"
    )

    huge = scale_rate(limit(repeat(base, 6), 100_000), 120.0)
    huge_config = ClusterConfig(256, 256, cost, cost, placement="round-robin")
    result, seconds = timed_run(huge, huge_config)
    print(
        f"256P256D {len(huge):,} requests: {seconds:.1f} s wall, "
        f"{len(huge) / seconds:,.0f} requests/s, completed {result.metrics()['num_completed']:,}"
    )
    print(f"requests_per_s={rps:.0f} speedup_vs_exact={speedup:.1f}")


if __name__ == "__main__":
    main()
