"""Issue 7's targets for ARES decode rescheduling on servegen-r1, measured in the simulator.

Runs the rescheduling experiment's cell (``tandem.experiments.rescheduling.run_cell``, the same
code as ``tandem experiment rescheduling``) on servegen-r1 at one decode-cluster size, then
prints ARES (error-model predictions) against the targets:

- P99 TPOT at least 75% below round-robin's (at round-robin's 90% load, and at ares's highest
  90% load with ``--max-goodput``);
- goodput at least 2.63x round-robin's (at the same loads; with ``--max-goodput`` also the ratio
  of the highest loads with >= 90% attainment);
- fewer preemptions than every baseline.

    .venv/bin/python benchmarks/rescheduling_targets.py [--decode 16] [--window-s 600] \
        [--max-goodput]

Last line: ``p99_tpot_cut=<share> goodput_ratio=<x> [max_goodput_ratio=<x>]
ares_preempted=<n> fewest_preempted=<yes|no>``.
"""

from __future__ import annotations

import argparse
import time
import warnings

from tandem.experiments.rescheduling import Setup, run_cell
from tandem.metrics.serving import parse_slo
from tandem.perf.registry import get_profile
from tandem.workload import load_workload

BASELINES = ("round-robin", "least-kv", "llumnix")
POLICIES = (*BASELINES, "ares")
SLO = "ttft=10s,tpot=100ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", type=int, default=16)
    parser.add_argument("--window-s", type=float, default=600.0)
    parser.add_argument("--max-goodput", action="store_true")
    args = parser.parse_args()

    setup = Setup(
        load_workload("servegen-r1"),
        get_profile("llama3-8b_a100_tp1"),
        args.decode,
        args.decode,
        parse_slo(SLO),
        args.window_s,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():  # a few long prompts exceed the profile's measured range
        warnings.simplefilter("ignore")
        cell = run_cell(
            setup, list(POLICIES), max_goodput=args.max_goodput, start_scale=args.decode / 16
        )
    elapsed = time.perf_counter() - started

    loads = [("round-robin's 90% load", cell)]
    if "at_ares_max" in cell:
        loads.append(("ares's 90% load", cell["at_ares_max"]))
    for label, at in loads:
        print(f"{args.decode}P{args.decode}D, {label}: {at['rate_rps']:.1f} req/s, SLO {SLO}")
        for policy in POLICIES:
            m = at["policies"][policy]
            print(
                f"  {policy:12s} attainment {m['slo_attainment']:.3f}  goodput "
                f"{m['goodput_rps']:7.1f} req/s  P99 TPOT {m['p99_tpot_ms']:6.1f} ms  "
                f"preempted {m['num_preempted']}"
            )
    print(f"({elapsed:.0f} s)")

    policies = cell["policies"]
    rr, ares = policies["round-robin"], policies["ares"]
    figures = [
        f"p99_tpot_cut={1 - ares['p99_tpot_ms'] / rr['p99_tpot_ms']:.3f}",
        f"goodput_ratio={ares['goodput_rps'] / rr['goodput_rps']:.3f}",
    ]
    if args.max_goodput:
        ratio = ares["max_goodput_rps"] / rr["max_goodput_rps"]
        figures.append(f"max_goodput_ratio={ratio:.3f}")
    fewest = all(ares["num_preempted"] < policies[b]["num_preempted"] for b in BASELINES)
    figures += [
        f"ares_preempted={ares['num_preempted']}",
        f"fewest_preempted={'yes' if fewest else 'no'}",
    ]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
