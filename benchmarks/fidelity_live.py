"""Plan -> serve -> measure -> simulate on a real system: the simulator's error against Tandem's
own server.

1. A trace: the first ``--num-requests`` of azure-conv, lengths scaled into the served model's
   context (so the shape of the length distribution is kept, not clipped into one value),
   arrival times kept; written as a Mooncake JSONL file that both sides read.
2. ``tandem serve`` 1P1D on Ray (``--pin-cpus`` when given: each worker on its own core, as
   the simulator assumes instances do not share compute).
3. ``tandem profile measure`` against it: the measured profile the simulator will use.
4. At each load (a share of the capacity the profile predicts), ``--repeats`` times:
   ``tandem bench serve -w TRACE --rate-scale X --save-requests`` (the requests as really sent
   and answered), then ``tandem simulate -w <those requests> --profile <measured>`` 1P1D.
5. Prints simulated against measured TTFT and TPOT (p50, p90, p99) with relative errors, the
   client's CPU, the spread over repeats. Last line: ``key=value`` pairs, one per error (mean
   absolute relative error over loads and repeats), e.g. ``tpot_p50_err=0.04``.

Usage: ``python benchmarks/fidelity_live.py [--num-requests 200] [--loads 0.3,0.6,0.9]
[--repeats 3] [--pin-cpus] [--out-dir out/fidelity]``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from tandem.bench.measure import capacity_rps

TANDEM = [sys.executable, "-m", "tandem"]
KEYS = [(m, p) for m in ("ttft", "tpot") for p in ("median", "p90", "p99")]


def scaled_trace(
    path: Path, num_requests: int, context: int, workload: str = "azure-conv"
) -> dict[str, float]:
    """The first ``num_requests`` of ``workload`` with lengths scaled into ``context`` (99th
    percentile of prompt plus output at 90% of it), as a Mooncake JSONL file."""
    from tandem.workload import load_workload

    reqs = load_workload(workload).requests[:num_requests]
    prompt = np.array([r.prompt_tokens for r in reqs], dtype=float)
    output = np.array([r.output_tokens for r in reqs], dtype=float)
    scale = 0.9 * context / float(np.percentile(prompt + output, 99))
    first = reqs[0].arrival_s
    with path.open("w") as fh:
        for r, p, o in zip(reqs, prompt, output, strict=True):
            p_s = int(max(1, min(context // 2, round(p * scale))))
            o_s = int(max(2, min(context - p_s - 1, round(o * scale))))
            fh.write(
                json.dumps(
                    {
                        "timestamp": (r.arrival_s - first) * 1000.0,
                        "input_length": p_s,
                        "output_length": o_s,
                    }
                )
                + "\n"
            )
    span = reqs[-1].arrival_s - first
    return {
        "scale": scale,
        "rate_rps": (len(reqs) - 1) / span if span > 0 else 0.0,
        "mean_prompt": float(np.mean(np.clip(np.rint(prompt * scale), 1, context // 2))),
        "mean_output": float(np.mean(np.clip(np.rint(output * scale), 2, None))),
    }


def start_server(
    pin: bool, log: Path, extra: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """``tandem serve`` 1P1D (``extra`` flags override), and its URL once ready."""
    args = [*TANDEM, "serve", "--port", "0", "--prefill", "1", "--decode", "1", *(extra or [])]
    if pin:
        args.append("--pin-cpus")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, start_new_session=True
    )
    assert proc.stdout is not None
    match = re.search(r"http://[0-9.]+:\d+", proc.stdout.readline())
    if not match:
        proc.kill()
        raise SystemExit(f"tandem serve did not print its URL; see {log}")
    url = match.group(0)
    deadline = time.monotonic() + 300
    while httpx.get(f"{url}/health", timeout=10).status_code != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"tandem serve did not become ready; see {log}")
        time.sleep(1)
    return proc, url


def run(args: list[str]) -> str:
    done = subprocess.run(
        [*TANDEM, *args], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"tandem {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def stop_server(proc: subprocess.Popen) -> None:
    """SIGINT (graceful), then a kill if it lingers past a minute."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure_profile(url: str, info: dict[str, float], concurrency: str, path: Path) -> dict:
    """``tandem profile measure`` at the trace's mean lengths; the profile written to ``path``."""
    run(
        [
            "profile",
            "measure",
            "--base-url",
            url,
            "--input-len",
            str(round(info["mean_prompt"])),
            "--output-len",
            str(round(info["mean_output"])),
            "--concurrency",
            concurrency,
            "--out",
            str(path),
        ]
    )
    return dict(yaml.safe_load(path.read_text()))


def bench_and_simulate(
    url: str,
    trace: Path,
    scale: float,
    num_requests: int,
    tag_path: Path,
    bench_flags: list[str],
    simulate_flags: list[str],
) -> tuple[dict, dict]:
    """``tandem bench serve`` of the trace (the requests as sent saved beside ``tag_path``),
    then ``tandem simulate`` of those requests; both JSON results."""
    saved = tag_path.with_name(tag_path.name + ".requests.jsonl")
    measured = tag_path.with_name(tag_path.name + ".bench.json")
    run(
        [
            "bench",
            "serve",
            "--base-url",
            url,
            "-w",
            str(trace),
            "--rate-scale",
            f"{scale:.6f}",
            "--num-prompts",
            str(num_requests),
            *bench_flags,
            "--save-requests",
            str(saved),
            "--json",
            str(measured),
        ]
    )
    sim = json.loads(run(["simulate", "-w", str(saved), *simulate_flags, "--json"]))
    return json.loads(measured.read_text()), sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=200)
    parser.add_argument("--loads", default="0.3,0.6,0.9")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pin-cpus", action="store_true")
    parser.add_argument("--out-dir", default="out/fidelity")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loads = [float(x) for x in args.loads.split(",")]

    proc, url = start_server(args.pin_cpus, out / "server.log")
    rows: list[dict] = []
    try:
        context = int(httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["max_model_len"])
        trace = out / "azure-conv-scaled.jsonl"
        info = scaled_trace(trace, args.num_requests, context)
        print(
            f"trace: {args.num_requests} azure-conv requests, lengths x{info['scale']:.3f} "
            f"(mean prompt {info['mean_prompt']:.0f}, output {info['mean_output']:.0f}), "
            f"{info['rate_rps']:.2f} req/s as recorded",
            flush=True,
        )
        profile_path = out / "measured.yaml"
        profile = measure_profile(url, info, "1,2,4,8,16,32", profile_path)
        cap = capacity_rps(profile, info["mean_prompt"], info["mean_output"])
        print(f"measured profile: {profile_path}; predicted capacity {cap:.1f} req/s", flush=True)
        simulate_flags = [
            *("--profile", str(profile_path)),
            *("--prefill", "1", "--decode", "1", "--max-batch", "64"),
        ]
        for load in loads:
            scale = load * cap / info["rate_rps"]
            for rep in range(args.repeats):
                meas, sim = bench_and_simulate(
                    url,
                    trace,
                    scale,
                    args.num_requests,
                    out / f"load{load:g}-rep{rep}",
                    [],
                    simulate_flags,
                )
                row = {"load": load, "rep": rep, "completed": meas["completed"]}
                for metric, pct in KEYS:
                    key = f"{pct}_{metric}_ms"
                    row[f"meas_{key}"], row[f"sim_{key}"] = meas[key], sim[key]
                    row[f"err_{key}"] = (sim[key] - meas[key]) / meas[key] if meas[key] else 0.0
                rows.append(row)
                print(
                    f"  load {load:g} rep {rep}: "
                    + "  ".join(
                        f"{m}_{p}: sim {row[f'sim_{p}_{m}_ms']:.1f} / meas "
                        f"{row[f'meas_{p}_{m}_ms']:.1f} ms ({100 * row[f'err_{p}_{m}_ms']:+.0f}%)"
                        for m, p in KEYS
                    ),
                    flush=True,
                )
    finally:
        stop_server(proc)
    (out / "fidelity.json").write_text(json.dumps(rows, indent=2))
    for load in loads:
        sel = [r for r in rows if r["load"] == load]
        spread = {
            f"{m}_{p}": statistics.pstdev([r[f"meas_{p}_{m}_ms"] for r in sel])
            / max(1e-9, statistics.mean([r[f"meas_{p}_{m}_ms"] for r in sel]))
            for m, p in KEYS
        }
        print(
            f"load {load:g}: run-to-run spread (CV of the measured figure) "
            + ", ".join(f"{k} {v:.2f}" for k, v in spread.items())
        )
    names = {"median": "p50", "p90": "p90", "p99": "p99"}
    print(
        " ".join(
            f"{m}_{names[p]}_err={statistics.mean(abs(r[f'err_{p}_{m}_ms']) for r in rows):.3f}"
            for m, p in KEYS
        )
    )


if __name__ == "__main__":
    main()
