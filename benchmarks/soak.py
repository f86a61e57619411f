"""Soak: many concurrent streaming clients against ``tandem serve`` for a fixed time.

1. ``tandem serve`` starts as a user runs it (a subprocess on a free 127.0.0.1 port; the local
   backend by default: every worker a thread of that one process, so its RSS is the whole
   server; ``--backend ray`` sums the RSS of the server's whole process session instead).
2. A warm-up of ``--clients`` requests at once (lazy allocations made), then the server's RSS
   ("before").
3. ``--clients`` clients, each in a closed loop for ``--duration`` seconds: one greedy streaming
   completion of exactly ``--max-tokens`` tokens (``ignore_eos``) after another, through the
   benchmark client's own stream reader (``tandem.bench.load.send_one``, the code
   ``tandem bench`` and ``run_load`` use). A client starts no request after the duration; the
   ones under way finish. RSS is sampled every second (the peak).
4. Once the server is idle again: RSS "after", and the /metrics gauges (requests running and
   waiting, KV usage) must all read 0. ``--rounds N`` soaks N times on the same server and
   prints the RSS after each round (a leak grows every round; a one-off growth does not);
   the figures and the checks below are the first round's.
5. Every stream must be complete: no error, a ``finish_reason``, ``[DONE]``, and a usage chunk
   whose ``completion_tokens`` equals ``--max-tokens``.

Last line: ``clients=... duration_s=... requests=... errors=... incomplete=...
usage_mismatch=... rss_before_mb=... rss_peak_mb=... rss_after_mb=... ...``
(target: errors 0, every stream complete).

    flock /tmp/tandem-ray.lock .venv/bin/python benchmarks/soak.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tandem.bench.load import (
    DEFAULT_PROMPT,
    StreamRecord,
    build_payload,
    completions_url,
    send_one,
    summarize,
)

TANDEM = str(Path(sys.executable).with_name("tandem"))
MB = 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (psutil where installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def server_rss(proc: subprocess.Popen[bytes], whole_session: bool) -> int:
    if not whole_session:
        return rss_bytes(proc.pid)
    total = 0
    for pid in session_pids(proc.pid):
        with contextlib.suppress(OSError):
            total += rss_bytes(pid)
    return total


def process_rss(proc: subprocess.Popen[bytes]) -> dict[int, tuple[str, int]]:
    """pid -> (short command line, RSS) of every process of the server's session."""
    out: dict[int, tuple[str, int]] = {}
    for pid in session_pids(proc.pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            name = " ".join([Path(argv[0]).name, *argv[1:2]])
            out[pid] = (name[:60], rss_bytes(pid))
    return out


def growth(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> str:
    """The processes whose RSS grew most, largest first."""
    grew = sorted(
        ((rss - before.get(pid, ("", 0))[1], pid, name) for pid, (name, rss) in after.items()),
        reverse=True,
    )
    return "; ".join(f"{name} (pid {pid}) {delta / MB:+.1f} MB" for delta, pid, name in grew[:4])


def stop_server(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGINT (graceful), then SIGTERM / SIGKILL to what is left of its session; its exit code
    if it exited by itself."""
    code = None
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout=90)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return code


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, limit_s: float) -> dict:
    """The server's /health once it says ok (its workers, pids included)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            reply = httpx.get(f"{url}/health", timeout=5)
            if reply.status_code == 200:
                return dict(reply.json())
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy within {limit_s:g} s: {log.read_text()[-2000:]}")


def wait_idle(url: str, limit_s: float = 30.0) -> dict[str, float]:
    """The gauges once they all read 0 (or after ``limit_s``, whatever they read)."""
    idle = gauges(url)
    deadline = time.monotonic() + limit_s
    while any(idle.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        idle = gauges(url)
    return idle


def gauges(url: str) -> dict[str, float]:
    """Requests running and waiting, and KV usage, of every worker (/metrics)."""
    out: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith(
            (
                "tandem:num_requests_running{",
                "tandem:num_requests_waiting{",
                "tandem:kv_cache_usage_perc{",
            )
        ):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


async def soak(
    url: str,
    model: str,
    args: argparse.Namespace,
    sample_rss: Any,
) -> tuple[list[StreamRecord], float, int]:
    """Every client's records, the wall time and the peak RSS sampled meanwhile."""
    payload = build_payload(model, args.prompt, args.max_tokens, ignore_eos=True, temperature=0.0)
    target = completions_url(url)
    records: list[StreamRecord] = []
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    timeout = httpx.Timeout(args.request_timeout, connect=30.0)
    start = time.perf_counter()
    peak = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() - start < args.duration:
            records.append(await send_one(client, target, payload, args.request_timeout))

    async def sampler(stop: asyncio.Event) -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, sample_rss())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    stop = asyncio.Event()
    watch = asyncio.create_task(sampler(stop))
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(args.clients)))
    stop.set()
    await watch
    return records, time.perf_counter() - start, peak


async def warm_up(url: str, model: str, args: argparse.Namespace) -> list[StreamRecord]:
    payload = build_payload(model, args.prompt, args.max_tokens, ignore_eos=True, temperature=0.0)
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(limits=limits, timeout=args.request_timeout) as client:
        return list(
            await asyncio.gather(
                *(
                    send_one(client, completions_url(url), payload, args.request_timeout)
                    for _ in range(args.clients)
                )
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--prefill", type=int, default=1)
    parser.add_argument("--decode", type=int, default=2)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--health-timeout", type=float, default=300.0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="Soak this many times on one server (leak check)."
    )
    parser.add_argument("--log", type=Path, default=None, help="Keep the server's log here.")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = args.log or Path(tempfile.mkstemp(prefix="soak-", suffix=".log")[1])
    cmd = [
        TANDEM, "serve", "--backend", args.backend, "--port", str(port),
        "--prefill", str(args.prefill), "--decode", str(args.decode),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    print("server:", " ".join(cmd[1:]), f"(log {log_path})", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    whole_session = args.backend == "ray"
    exit_code = None
    try:
        wait_healthy(url, proc, log_path, args.health_timeout)
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        warm = asyncio.run(warm_up(url, model, args))
        warm_bad = sum(1 for r in warm if r.error is not None or not r.complete)
        rss_before = server_rss(proc, whole_session)
        processes = process_rss(proc)
        print(
            f"warm-up: {len(warm)} requests ({warm_bad} failed); RSS before "
            f"{rss_before / MB:.1f} MB",
            flush=True,
        )
        records, wall_s, rss_peak = asyncio.run(
            soak(url, model, args, lambda: server_rss(proc, whole_session))
        )
        idle = wait_idle(url)
        rss_after = server_rss(proc, whole_session)
        if whole_session:
            now = process_rss(proc)
            print(f"round 1 RSS growth: {growth(processes, now)}", flush=True)
            processes = now
        # Further rounds on the same server: a leak grows with every round, a one-off does not.
        later: list[str] = []
        for round_number in range(2, args.rounds + 1):
            more, more_s, more_peak = asyncio.run(
                soak(url, model, args, lambda: server_rss(proc, whole_session))
            )
            wait_idle(url)
            rss = server_rss(proc, whole_session)
            if whole_session:
                now = process_rss(proc)
                print(f"round {round_number} RSS growth: {growth(processes, now)}", flush=True)
                processes = now
            bad = sum(1 for r in more if r.error is not None or not r.complete)
            later.append(f"{rss / MB:.1f}")
            print(
                f"round {round_number}: {len(more)} requests, {bad} failed, {more_s:.1f} s; "
                f"RSS peak {more_peak / MB:.1f} MB, after {rss / MB:.1f} MB",
                flush=True,
            )
    finally:
        exit_code = stop_server(proc)

    usage_mismatch = [
        r
        for r in records
        if r.error is None
        and r.complete
        and (not r.usage or int(r.usage.get("completion_tokens") or 0) != args.max_tokens)
    ]
    # Stricter than StreamRecord.complete (either one): a finish_reason and [DONE] and text.
    incomplete = [
        r
        for r in records
        if r.error is None and (r.finish_reason is None or not r.saw_done or not r.chunk_times_s)
    ]
    m = summarize(records, args.clients, wall_s)
    busy = {k: v for k, v in idle.items() if v}
    print(
        f"\n{args.clients} clients x {args.duration:g} s ({args.backend} backend, "
        f"{args.prefill} prefill + {args.decode} decode, {args.max_tokens} tokens per request): "
        f"{wall_s:.1f} s wall"
    )
    print(f"requests:        {m['num_requests']} ({m['finish_reasons']})")
    print(f"errors:          {m['num_errors']} {m['error_samples'][:3]}")
    print(f"incomplete:      {len(incomplete)} (no finish_reason, no [DONE] or no text)")
    print(f"usage mismatch:  {len(usage_mismatch)} (completion_tokens != {args.max_tokens})")
    print(
        f"throughput:      {m['output_throughput']:.0f} tokens/s, "
        f"{m['num_requests'] / wall_s:.1f} requests/s; TTFT p50/p99 "
        f"{m['median_ttft_ms']:.0f}/{m['p99_ttft_ms']:.0f} ms; TPOT p50/p99 "
        f"{m['median_tpot_ms']:.1f}/{m['p99_tpot_ms']:.1f} ms"
    )
    print(
        f"server RSS:      before {rss_before / MB:.1f} MB, peak {rss_peak / MB:.1f} MB, "
        f"after {rss_after / MB:.1f} MB ({(rss_after - rss_before) / MB:+.1f} MB)"
    )
    print(f"gauges after:    {busy or 'all 0'}")
    print(f"server exit:     {exit_code}")
    print(
        f"clients={args.clients} duration_s={args.duration:g} backend={args.backend} "
        f"requests={m['num_requests']} errors={m['num_errors']} "
        f"incomplete={len(incomplete)} "
        f"usage_mismatch={len(usage_mismatch)} output_tok_s={m['output_throughput']:.0f} "
        f"rss_before_mb={rss_before / MB:.1f} rss_peak_mb={rss_peak / MB:.1f} "
        f"rss_after_mb={rss_after / MB:.1f} gauges_idle={int(not busy)} exit={exit_code}"
        + (f" rss_after_later_rounds_mb={','.join(later)}" if later else "")
    )


if __name__ == "__main__":
    main()
