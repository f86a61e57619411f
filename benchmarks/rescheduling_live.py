"""Decode rescheduling on a live cluster, beside what the simulator predicts for it.

1. A trace: the first ``--num-requests`` of servegen-r1 (reasoning: long, skewed outputs),
   lengths scaled into the served model's context, output lengths forced with ``ignore_eos``.
2. ``tandem serve`` 1P2D on Ray, ``--max-batch`` small and ``--decode-kv-tokens`` set so that
   memory binds (``--kv-per-request`` times the trace's mean KV per request, per worker).
3. A profile of this server, measured once by ``tandem profile measure`` (least-kv server),
   with its KV capacity set to the workers' ``--decode-kv-tokens``.
4. For each policy (round-robin, least-kv, llumnix, and ares with oracle, progress-mean and
   head predictions), a server of its own, and ``--repeats`` runs of
   ``tandem bench serve -w TRACE --rate-scale X --save-requests --slo ...`` at the rate that
   ``--load`` times the profile's capacity gives; per run, from the server's /metrics:
   preemptions, migrations by outcome, bytes moved. Beside each run, ``tandem simulate`` of the
   requests as really sent, same cluster, same policy (the simulator's ``ares`` uses its
   stories260K error model for predictions: its stand-in for progress-mean and head).
5. Prints per policy the medians over repeats (spread in brackets): P99 and mean TPOT, P99
   TTFT, attainment, preemptions, migrations, bytes, and the simulator's figures. Last line:
   ``key=value`` pairs (live P99 TPOT per policy, ms).

What this shows is that the machinery works live and whether the simulator foresees the live
ordering of policies; on a 2-core machine, with 3 busy worker processes and the client, the
absolute figures are noisy (hence the spread).

Usage: ``python benchmarks/rescheduling_live.py [--num-requests 120] [--repeats 3]
[--load 0.9] [--policies round-robin,least-kv,llumnix,ares-oracle,ares-progress-mean,ares-head]
[--out-dir out/rescheduling_live]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import httpx
import yaml
from fidelity_live import (
    bench_and_simulate,
    measure_profile,
    scaled_trace,
    start_server,
    stop_server,
)

from tandem.bench.measure import capacity_rps

#: policy -> (tandem serve flags, tandem simulate flags)
POLICIES: dict[str, tuple[list[str], list[str]]] = {
    "round-robin": (["--placement", "round-robin"], ["--policy", "round-robin"]),
    "least-kv": (["--placement", "least-kv"], ["--policy", "least-kv"]),
    "llumnix": (
        ["--placement", "least-kv", "--rescheduler", "llumnix"],
        ["--policy", "llumnix"],
    ),
    **{
        f"ares-{source}": (
            [
                "--placement",
                "ares",
                "--rescheduler",
                "ares",
                "--prediction",
                source,
                "--admission",
                "predictive",
            ],
            ["--policy", "ares-oracle" if source == "oracle" else "ares"],
        )
        for source in ("oracle", "progress-mean", "head")
    },
}
SLO = "ttft=2000 tpot=50"


def scrape(url: str) -> dict[str, float]:
    """Preemptions, migrations by outcome and migrated bytes from /metrics (summed)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {"preemptions": 0.0, "bytes": 0.0}
    for line in text.splitlines():
        if line.startswith("tandem:num_preemptions_total{"):
            out["preemptions"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tandem:migration_bytes_total{"):
            out["bytes"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tandem:migrations_total{"):
            outcome = re.search(r'outcome="([a-z]+)"', line)
            if outcome:
                out[f"mig_{outcome.group(1)}"] = float(line.rsplit(" ", 1)[1])
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--kv-per-request", type=float, default=4.0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--out-dir", default="out/rescheduling_live")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policies = args.policies.split(",")
    for name in policies:
        if name not in POLICIES:
            raise SystemExit(f"unknown policy {name}; known: {', '.join(POLICIES)}")

    trace = out / "servegen-r1-scaled.jsonl"
    info = scaled_trace(trace, args.num_requests, 512, "servegen-r1")
    kv_tokens = int(args.kv_per_request * (info["mean_prompt"] + info["mean_output"]))
    common = [
        "--backend",
        "ray",
        "--decode",
        "2",
        "--max-batch",
        str(args.max_batch),
        "--decode-kv-tokens",
        str(kv_tokens),
    ]
    print(
        f"trace: {args.num_requests} servegen-r1 requests, lengths x{info['scale']:.3f} (mean "
        f"prompt {info['mean_prompt']:.0f}, output {info['mean_output']:.0f}); 1P2D, max batch "
        f"{args.max_batch}, {kv_tokens} KV tokens per decode worker",
        flush=True,
    )
    profile_path = out / "measured.yaml"
    proc, url = start_server(False, out / "profile-server.log", common)
    try:
        concurrency = f"1,2,4,{args.max_batch},{2 * args.max_batch}"
        profile = measure_profile(url, info, concurrency, profile_path)
    finally:
        stop_server(proc)
    profile["kv"]["capacity_tokens"] = kv_tokens
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    cap = capacity_rps(profile, info["mean_prompt"], info["mean_output"], num_decode=2)
    scale = args.load * cap / info["rate_rps"]
    print(f"profile {profile_path}: capacity ~{cap:.1f} req/s (2 decode); rate x{scale:.3f}")

    rows: list[dict] = []
    for name in policies:
        serve_flags, sim_flags = POLICIES[name]
        proc, url = start_server(False, out / f"{name}-server.log", [*common, *serve_flags])
        try:
            for rep in range(args.repeats):
                before = scrape(url)
                meas, sim = bench_and_simulate(
                    url,
                    trace,
                    scale,
                    args.num_requests,
                    out / f"{name}-rep{rep}",
                    ["--slo", SLO],
                    [
                        *("--profile", str(profile_path), "--prefill", "1", "--decode", "2"),
                        *("--max-batch", str(args.max_batch), "--slo", SLO, *sim_flags),
                    ],
                )
                counts = delta(scrape(url), before)
                row = {"policy": name, "rep": rep, **counts}
                for key in ("p99_tpot_ms", "mean_tpot_ms", "p99_ttft_ms", "slo_attainment"):
                    row[key], row[f"sim_{key}"] = meas[key], sim[key]
                row["sim_preemptions"] = sim["num_preempted"]
                row["sim_migrations"] = sim["num_migrations"]
                row["completed"] = meas["completed"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            stop_server(proc)
    (out / "rescheduling_live.json").write_text(json.dumps(rows, indent=2))

    print(
        "\npolicy: live P99 TPOT | mean TPOT | P99 TTFT (ms) | attainment | preemptions | "
        "migrated/aborted/cancelled/replaced | MiB moved  || simulator: P99 TPOT | P99 TTFT | "
        "attainment | preemptions | migrations"
    )
    summary = []
    for name in policies:
        sel = [r for r in rows if r["policy"] == name]

        def col(key: str, sel: list[dict] = sel) -> list[float]:
            return [float(r.get(key, 0.0)) for r in sel]

        migs = "/".join(
            f"{statistics.median(col(f'mig_{o}')):.0f}"
            for o in ("migrated", "aborted", "cancelled", "replaced")
        )
        print(
            f"{name}: {spread(col('p99_tpot_ms'))} | {spread(col('mean_tpot_ms'))} | "
            f"{spread(col('p99_ttft_ms'))} | {statistics.median(col('slo_attainment')):.3f} | "
            f"{spread(col('preemptions'))} | {migs} | "
            f"{statistics.median(col('bytes')) / 2**20:.2f}  || "
            f"{spread(col('sim_p99_tpot_ms'))} | {spread(col('sim_p99_ttft_ms'))} | "
            f"{statistics.median(col('sim_slo_attainment')):.3f} | "
            f"{spread(col('sim_preemptions'))} | {spread(col('sim_migrations'))}",
            flush=True,
        )
        summary.append(f"{name}_p99_tpot_ms={statistics.median(col('p99_tpot_ms')):.1f}")
    print(" ".join(summary))


if __name__ == "__main__":
    sys.exit(main())
