"""The planning paper's Figure 3 deployment in the simulator (issue 18 target).

DeepSeek-V3.1 on 8xH200 instances (``examples/measured_deepseek_v3_h200.yaml``), fixed
6,144-token prompts and 512-token outputs, Poisson arrivals; the highest throughput (input +
output tokens per minute) at which the mean TTFT stays within 2 s and the mean TPOT within
20 ms, for 3P4D and 3P3D, against the paper's measured 4.8M and 3.6M tokens/min (Li et al.,
arXiv 2603.04716). Printed for the simulator's defaults (whole-prompt prefill, the TPOT table
as a line), then adding two mechanisms of the serving engine, each off by default and fitted
to nothing here: chunked prefill at the paper's chunk of 24,576 tokens (SGLang's
``--chunked-prefill-size``), and decode CUDA-graph padding at SGLang's default capture sizes
(``tandem.perf.measured``: a batch runs as the next captured size, multiples of 8).

Method: steady-state runs as ``plan --verify`` sizes them (``tandem.plan.verify``: warm-up,
judged window, tail; only requests arriving in the window are judged), a bisection on the rate
to 0.5%, each rate judged on the mean over ``--seeds`` seeds of the run's mean TTFT and TPOT.

Last line: ``3p4d_tokens_per_min=... 3p3d_tokens_per_min=... 3p4d_err=... 3p3d_err=...`` with
both mechanisms on (err = simulated / measured - 1).
Usage: ``python benchmarks/figure3.py [--chunk-tokens 24576] [--seeds 2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import numpy as np

from tandem.perf.measured import GRAPH_BATCH_SIZES
from tandem.perf.registry import load_measured
from tandem.plan.verify import steady_run_length, verification_workload
from tandem.sim import ClusterConfig, simulate

PROFILE = Path(__file__).resolve().parent.parent / "examples" / "measured_deepseek_v3_h200.yaml"
INPUT_LEN, OUTPUT_LEN = 6144, 512
TTFT_SLO_S, TPOT_SLO_S = 2.0, 0.020
#: The paper's measured highest throughputs meeting both SLOs (tokens/min).
MEASURED = {(3, 4): 4.8e6, (3, 3): 3.6e6}


def tokens_per_min(rate_rps: float) -> float:
    return rate_rps * (INPUT_LEN + OUTPUT_LEN) * 60.0


#: (label, chunk tokens or None, CUDA-graph padding on)
Variant = tuple[str, int | None, bool]


def means(rate_rps: float, p: int, d: int, v: Variant, seed: int) -> tuple[float, float]:
    """Mean TTFT and TPOT (s) of the judged requests at this rate."""
    _, chunk, padding = v
    cost = load_measured(PROFILE)
    if padding:
        cost = dataclasses.replace(cost, graph_batch_sizes=GRAPH_BATCH_SIZES["sglang"])
    run = steady_run_length(rate_rps, OUTPUT_LEN * TPOT_SLO_S)
    w = verification_workload(
        rate_rps, run.num_requests, input_len=INPUT_LEN, output_len=OUTPUT_LEN, seed=seed
    )
    r = simulate(w, ClusterConfig(p, d, cost, cost, chunk_tokens=chunk, seed=seed))
    t = r.arrival_s - r.arrival_s.min()
    judged = (t >= run.judge_from_s) & (t < run.judge_until_s)
    ttft = np.where(r.completed, r.ttft_s, np.inf)[judged]
    tpot = np.where(r.completed, r.tpot_s, np.inf)[judged]
    return float(ttft.mean()), float(tpot.mean())


def seed_means(rate_rps: float, p: int, d: int, v: Variant, seeds: int) -> tuple[float, float]:
    runs = [means(rate_rps, p, d, v, seed) for seed in range(seeds)]
    return float(np.mean([r[0] for r in runs])), float(np.mean([r[1] for r in runs]))


def meets(rate_rps: float, p: int, d: int, v: Variant, seeds: int) -> bool:
    ttft, tpot = seed_means(rate_rps, p, d, v, seeds)
    return ttft <= TTFT_SLO_S and tpot <= TPOT_SLO_S


def highest_rate(p: int, d: int, v: Variant, seeds: int) -> float:
    """Bisection between a rate that meets and one that does not, to 0.5%."""
    lo, hi = 1.0, 40.0
    while hi / lo > 1.005:
        mid = (lo * hi) ** 0.5
        if meets(mid, p, d, v, seeds):
            lo = mid
        else:
            hi = mid
    return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunk-tokens", type=int, default=24576)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the table's one prefill point: not the point here
    chunk = args.chunk_tokens
    variants: list[Variant] = [
        ("defaults", None, False),
        (f"chunk {chunk:,}", chunk, False),
        ("graph padding", None, True),
        (f"chunk {chunk:,} + graph padding", chunk, True),
    ]
    found: dict[tuple[int, int, str], float] = {}
    for p, d in MEASURED:
        measured_rate = MEASURED[p, d] / 60.0 / (INPUT_LEN + OUTPUT_LEN)
        print(
            f"{p}P{d}D: measured {MEASURED[p, d] / 1e6:.1f}M tokens/min = {measured_rate:.2f} "
            f"req/s ({measured_rate / d:.3f} per decode instance)"
        )
        for v in variants:
            rate = highest_rate(p, d, v, args.seeds)
            found[p, d, v[0]] = tokens_per_min(rate)
            err = found[p, d, v[0]] / MEASURED[p, d] - 1
            ttft, tpot = seed_means(rate, p, d, v, args.seeds)
            m_ttft, m_tpot = seed_means(measured_rate, p, d, v, args.seeds)
            print(
                f"  {v[0]:>32}: {found[p, d, v[0]] / 1e6:.2f}M tokens/min ({rate:.2f} req/s, "
                f"{err:+.1%}); mean TTFT {ttft:.2f} s, TPOT {tpot * 1e3:.2f} ms there; "
                f"at the measured load TTFT {m_ttft:.2f} s, TPOT {m_tpot * 1e3:.2f} ms",
                flush=True,
            )
    last = variants[-1][0]
    a, b = found[3, 4, last], found[3, 3, last]
    print(
        f"3p4d_tokens_per_min={a:.0f} 3p3d_tokens_per_min={b:.0f} "
        f"3p4d_err={a / MEASURED[3, 4] - 1:.4f} 3p3d_err={b / MEASURED[3, 3] - 1:.4f}"
    )


if __name__ == "__main__":
    main()
