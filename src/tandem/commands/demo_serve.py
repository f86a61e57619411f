"""The real part of ``tandem demo``: plan -> serve -> measure -> simulate, in miniature.

1. ``tandem serve``'s server starts on a free 127.0.0.1 port (1 prefill + 2 decode workers).
2. Its profile is measured through HTTP (``bench.measure``: prefill throughput, TPOT against
   the decode batch), as ``tandem profile measure`` does.
3. The planner sizes a cluster for a short burst from that measured profile.
4. The burst goes out through HTTP (Poisson arrivals, fixed lengths, ``ignore_eos``).
5. The simulator replays the same requests (their real send times and lengths) on the same
   cluster with the measured profile; measured and simulated TTFT / TPOT print side by side.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import numpy as np
import typer

from tandem.bench.measure import capacity_rps
from tandem.commands._output import print_table

DEMO_INPUT_TOKENS = 32
DEMO_OUTPUT_TOKENS = 64
DEMO_RATE_SHARE = 0.5  # the burst's rate as a share of the 1P2D capacity the profile predicts
DEMO_SERVE_SLO = "ttft=1s,tpot=50ms"


def print_served_burst(backend: str, num_requests: int) -> None:
    """Serve the embedded model, measure it, plan for a burst, send it, simulate it."""
    import torch

    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    typer.echo(
        f"Real serving: starting stories260K on 1 prefill + 2 decode workers "
        f"({backend} backend) ..."
    )
    start = time.perf_counter()
    with ServerThread(ServeConfig(backend=backend, port=0)) as thread:
        url = thread.start(ready_timeout_s=300)
        typer.echo(f"  ready at {url} after {time.perf_counter() - start:.0f} s; measuring it")
        model = thread.server.front.model_name
        controller = thread.server.front.controller
        kv = (controller.info.kv_bytes_per_token, thread.server.config.decode_kv_tokens)
        profile, cost = _measure(url, model, kv)
        rate = DEMO_RATE_SHARE * capacity_rps(
            profile, DEMO_INPUT_TOKENS, DEMO_OUTPUT_TOKENS, num_decode=2
        )
        _print_plan(cost, rate)
        typer.echo(f"  sending {num_requests} requests at {rate:.1f} req/s (Poisson)")
        sent, duration = _burst(url, model, num_requests, rate)
    _print_comparison(backend, sent, duration, cost, num_requests)


def _measure(url: str, model: str, kv: tuple[int, int]) -> tuple[dict[str, Any], Any]:
    from tandem.bench.measure import measure_decode, measure_prefill, measured_profile
    from tandem.perf.measured_file import measured_from_mapping

    bytes_per_token, capacity = kv  # the server's own (tandem profile measure reads /metrics)
    prompt = list(range(1, DEMO_INPUT_TOKENS + 1))
    prefill = asyncio.run(
        measure_prefill(url, model, prompt, DEMO_INPUT_TOKENS, concurrency=8, num_requests=32)
    )
    decode = [
        asyncio.run(
            measure_decode(url, model, prompt, DEMO_INPUT_TOKENS, DEMO_OUTPUT_TOKENS, c, rounds=2)
        )
        for c in (1, 4, 16)
    ]
    doc = measured_profile(
        name="demo-measured",
        model=model,
        hardware="this machine",
        source=f"demo at {url}",
        prefill=prefill,
        decode=decode,
        kv_bytes_per_token=bytes_per_token,
        kv_capacity_tokens=capacity,
    )
    return doc, measured_from_mapping(doc, "the demo's measured profile")


def _print_plan(cost: Any, rate: float) -> None:
    from tandem.metrics.serving import parse_slo
    from tandem.plan.inputs import shape_from_means
    from tandem.plan.planner import PlanRequest, make_plan

    slo = parse_slo(DEMO_SERVE_SLO)
    assert slo.ttft_s is not None and slo.tpot_s is not None
    request = PlanRequest(
        shape=shape_from_means(DEMO_INPUT_TOKENS, DEMO_OUTPUT_TOKENS),
        rate_rps=rate,
        ttft_slo_s=slo.ttft_s,
        tpot_slo_s=slo.tpot_s,
        cost=cost,
        max_batch_size=64,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = make_plan(request)
    verdict = "feasible" if plan.feasible else f"infeasible ({plan.reason})"
    typer.echo(
        f"  plan from the measured profile for {rate:.1f} req/s under {DEMO_SERVE_SLO}: "
        f"{plan.num_prefill}P{plan.num_decode}D, {verdict} (serving on 1P2D)"
    )


def _burst(url: str, model: str, n: int, rate: float) -> tuple[list[Any], float]:
    from tandem.bench.openloop import RequestSpec, run_requests

    gaps = np.random.default_rng(0).exponential(1.0 / rate, size=n)
    arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    prompt = list(range(1, DEMO_INPUT_TOKENS + 1))
    specs = [RequestSpec(float(a), prompt, DEMO_OUTPUT_TOKENS) for a in arrivals]
    result = asyncio.run(run_requests(url, model, specs, ignore_eos=True, timeout_s=120))
    sent = [r for r in result.records if r is not None]
    return sent, result.duration_s


def _print_comparison(backend: str, sent: list[Any], duration: float, cost: Any, n: int) -> None:
    from tandem.metrics.serving import compute_metrics
    from tandem.sim import ClusterConfig, simulate
    from tandem.workload.request import workload_from_arrays

    done = [r for r in sent if r.error is None and r.complete]
    typer.echo(f"  {len(done)} of {n} requests complete, {len(sent) - len(done)} failed")
    measured = compute_metrics([r.record() for r in done], duration_s=duration)
    first = min(r.arrival_s for r in done)
    order = sorted(done, key=lambda r: r.arrival_s)
    workload = workload_from_arrays(
        "demo-burst",
        np.array([r.arrival_s - first for r in order]),
        np.array([max(1, r.record().prompt_tokens) for r in order]),
        np.array([r.record().output_tokens for r in order]),
    )
    config = ClusterConfig(
        num_prefill=1,
        num_decode=2,
        prefill_cost=cost,
        decode_cost=cost,
        max_batch_size=64,
        placement="least-kv",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulated = simulate(workload, config).metrics()
    rows = []
    for label, key, fmt in (
        ("TTFT p50 ms", "median_ttft_ms", "{:.0f}"),
        ("TTFT p90 ms", "p90_ttft_ms", "{:.0f}"),
        ("TPOT p50 ms", "median_tpot_ms", "{:.1f}"),
        ("TPOT p90 ms", "p90_tpot_ms", "{:.1f}"),
    ):
        m, s = measured[key], simulated[key]
        rows.append([label, fmt.format(m), fmt.format(s), f"{100 * (s - m) / m:+.0f}%"])
    rows.append(["output tokens/s", f"{measured['output_throughput']:.0f}", "", ""])
    print_table(
        f"Served by tandem serve ({backend}) vs simulated",
        ["", "measured", "simulated", "error"],
        rows,
    )
