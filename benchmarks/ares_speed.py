"""Issue 19 item 3: how much slower an ``ares`` cell is than a ``least-kv`` cell of the same size.

One cell here is one simulation of the rescheduling experiment's setup (servegen-r1 on
``llama3-8b_a100_tp1``, one prefill instance per decode instance, ``window_s`` seconds of
arrivals at rate scale ``--scale``, by default the load the experiment uses for 16 decode
instances). The workload is built outside the timer. Policies alternate ``--repeats`` times in
one process, so a busy shared machine slows both alike; the ratio of the medians is the figure.

    .venv/bin/python benchmarks/ares_speed.py [--decode 16] [--scale 1.9] [--window-s 600] \
        [--repeats 3] [--profile] [--pieces]

``--pieces`` also times least-kv with each piece of ares added alone (predictions drawn,
predictive admission, ares placement, the ares rescheduler), alternated with the rest: what
each costs.

Last line: ``least_kv_s=<median> ares_s=<median> ratio=<ares/least-kv> target=2.0 met=<yes|no>``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import warnings
from dataclasses import replace

from tandem.experiments.rescheduling import Setup, config_for
from tandem.metrics.serving import parse_slo
from tandem.perf.registry import get_profile
from tandem.sim import simulate
from tandem.workload import load_workload

TARGET = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", type=int, default=16)
    parser.add_argument("--scale", type=float, default=1.9)
    parser.add_argument("--window-s", type=float, default=600.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one ares run too")
    parser.add_argument("--pieces", action="store_true", help="time each ares piece alone too")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # a few long prompts exceed the profile's measured range

    setup = Setup(
        load_workload("servegen-r1"),
        get_profile("llama3-8b_a100_tp1"),
        args.decode,
        args.decode,
        parse_slo("ttft=10s,tpot=100ms"),
        args.window_s,
    )
    workload = setup.at(args.scale)
    base = config_for(setup, "least-kv")
    configs = {"least-kv": base, "ares": config_for(setup, "ares")}
    if args.pieces:
        predicted = replace(base, prediction="error-model")
        configs |= {
            "+predictions": predicted,
            "+admission": replace(predicted, admission="predictive"),
            "+placement": replace(predicted, placement="ares"),
            "+rescheduler": replace(predicted, rescheduler="ares"),
        }
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, config in configs.items():
            started = time.perf_counter()
            simulate(workload, config)
            times[name].append(time.perf_counter() - started)
    print(
        f"{args.decode}P{args.decode}D servegen-r1 x{args.scale:g}, {len(workload)} requests, "
        f"{args.window_s:g} s window"
    )
    for name, values in times.items():
        print(f"  {name:12s} " + " ".join(f"{v:.2f}" for v in values) + " s")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(simulate, workload, config_for(setup, "ares"))
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    least = statistics.median(times["least-kv"])
    ares = statistics.median(times["ares"])
    ratio = ares / least
    print(
        f"least_kv_s={least:.2f} ares_s={ares:.2f} ratio={ratio:.2f} target={TARGET:g} "
        f"met={'yes' if ratio <= TARGET else 'no'}"
    )


if __name__ == "__main__":
    main()
