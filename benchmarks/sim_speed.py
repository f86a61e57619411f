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

``--prefix-cache-tokens M`` (with or without ``--chunk-tokens N``) measures the speed with
prefix caching on (M tokens per prefill instance; chunked prefill too when N is given) against
both off, on the same 32P32D cluster, profile and placement, alternating as above; last line
``features_over_off=<median on speed / median off speed>``; ``--breakdown`` first measures
each feature alone the same way. azure-conv carries no block
hashes (a cache would never be consulted past an empty lookup), so this mode replays
mooncake-conv, whose requests carry its ``hash_ids``: ``--requests`` of it back to back at
``--mooncake-rate-scale`` times its rate (default x3: 32P32D serve it without saturating).
Each copy of the trace gets its own hash ids (shifted by the copy's index times the largest
id plus one), so a copy never hits on blocks of an earlier copy: the hits are the trace's own.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import replace

from tandem.perf.registry import get_profile
from tandem.sim import ClusterConfig, simulate
from tandem.workload import Workload, load_workload
from tandem.workload.transforms import limit, repeat, scale_rate


def timed_run(workload, config):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = simulate(workload, config)
    return result, time.perf_counter() - start


def compare(workload, off, on, rounds: int, what: str) -> float:  # noqa: ANN001
    """Alternate off/on runs (the machine's load drifts; alternating spreads it over both);
    the median on speed over the median off speed."""
    speeds: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(rounds):
        pairs = (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))
        for label, cfg in pairs:
            result, seconds = timed_run(workload, cfg)
            speeds[label].append(len(workload) / seconds)
            extra = ""
            if label == "on" and cfg.prefix_cache_tokens is not None:
                m = result.metrics()
                extra = (
                    f", prefix hit rate {m['prefix_cache_hit_rate']:.3f} of prompt tokens "
                    f"({m['prefix_cache_request_hit_rate']:.3f} of requests)"
                )
            print(
                f"round {i + 1} {what} {label}: {seconds:.1f} s, "
                f"{speeds[label][-1]:,.0f} req/s{extra}"
            )
    return statistics.median(speeds["on"]) / statistics.median(speeds["off"])


def distinct_copies(w: Workload, times: int) -> Workload:
    """``times`` copies of ``w`` back to back, each copy's block hashes shifted past the
    previous copy's, so that copies share no block (hits come from within a copy only)."""
    out = repeat(w, times)
    if times == 1:
        return out
    top = max((max(r.prefix_hashes) for r in w.requests if r.prefix_hashes), default=0) + 1
    n = len(w)
    requests = tuple(
        r
        if r.prefix_hashes is None
        else replace(r, prefix_hashes=tuple(h + (i // n) * top for h in r.prefix_hashes))
        for i, r in enumerate(out.requests)
    )
    return Workload(out.name, requests, out.notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--profile", default="llama3-8b_a100_tp1")
    parser.add_argument("--exact-requests", type=int, default=20_000)
    parser.add_argument("--chunk-tokens", type=int, default=None)
    parser.add_argument("--prefix-cache-tokens", type=int, default=None)
    parser.add_argument("--mooncake-rate-scale", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="With both features: also each alone against off, before the combined figure.",
    )
    args = parser.parse_args()

    warnings.simplefilter("ignore")  # out-of-measured-range notes are not the point here
    cost = get_profile(args.profile)
    base = load_workload("azure-conv")
    copies = -(-args.requests // len(base))
    # 32P32D serve ~16x the trace's rate (5.5 req/s) without saturating.
    big = scale_rate(limit(repeat(base, copies), args.requests), 16.0)
    config = ClusterConfig(32, 32, cost, cost, placement="round-robin")
    if args.prefix_cache_tokens is not None:
        trace = load_workload("mooncake-conv")
        copies = -(-args.requests // len(trace))
        hashed = limit(distinct_copies(trace, copies), args.requests)
        hashed = scale_rate(hashed, args.mooncake_rate_scale)
        on = replace(
            config, chunk_tokens=args.chunk_tokens, prefix_cache_tokens=args.prefix_cache_tokens
        )
        what = "prefix cache" + (" + chunked" if args.chunk_tokens is not None else "")
        print(f"mooncake-conv x{args.mooncake_rate_scale:g}, {len(hashed):,} requests, 32P32D")
        if args.breakdown and args.chunk_tokens is not None:
            for label, part in (
                ("chunked", replace(config, chunk_tokens=args.chunk_tokens)),
                ("prefix cache", replace(config, prefix_cache_tokens=args.prefix_cache_tokens)),
            ):
                alone = compare(hashed, config, part, args.rounds, label)
                print(f"{label.replace(' ', '_')}_alone_over_off={alone:.3f}")
        ratio = compare(hashed, config, on, args.rounds, what)
        print(f"features_over_off={ratio:.3f}")
        return
    if args.chunk_tokens is not None:
        chunked = replace(config, chunk_tokens=args.chunk_tokens)
        ratio = compare(big, config, chunked, args.rounds, "chunked")
        print(f"chunked_over_off={ratio:.3f}")
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
