"""``tandem serve`` against the bare runner and ``transformers serve``: one table.

1. Each server is started on a free 127.0.0.1 port (torch pinned to one thread), polled on
   ``/health`` with a time limit, asked for its model name on ``/v1/models``, warmed up with a
   few requests, then loaded with ``tandem.bench.load.run_load`` at each concurrency, and
   stopped (its whole process group, SIGTERM then SIGKILL).
2. Tandem gets ``ignore_eos`` (every request makes exactly ``--max-tokens`` tokens);
   ``transformers serve`` rejects that field, so its outputs end at EOS and the table shows
   their real mean length.
3. Optionally (``--shape-clients N``) N clients at once, one request each, check that every
   stream completes: the shape of many live clients, not a speed figure.
4. The bare runner (``runner_baseline.measure_runner``) runs last, with no server alive.
5. The table: output tokens/s per server and concurrency, tandem / runner, tandem /
   transformers, TTFT and TPOT p50/p99; then a one-line summary (target: tandem >= 0.8x the
   bare runner at c=1 and 8).

Usage: ``.venv/bin/python benchmarks/serve_vs_baselines.py --hf-dir out/stories260K-hf``
(make the directory with ``scripts/gguf_to_hf.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tandem.bench.load import DEFAULT_PROMPT, format_line, run_load

_TARGET_RATIO = 0.8
_TARGET_LEVELS = (1, 8)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    return env


def _help_mentions(cmd: list[str], flag: str) -> bool:
    try:
        done = subprocess.run(
            [*cmd, "--help"], capture_output=True, text=True, timeout=120, env=_env()
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in done.stdout + done.stderr


class Server:
    """One server process in its own process group, with its log in a temporary file."""

    def __init__(self, name: str, cmd: list[str], port: int) -> None:
        self.name = name
        self.cmd = cmd
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix=f"{name}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )

    def wait_healthy(self, limit_s: float) -> str | None:
        """None when ``/health`` answers 200 within ``limit_s``, else why not."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}: {self.log_tail()}"
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2.0).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return f"no healthy /health within {limit_s:g} s: {self.log_tail()}"

    def model_name(self, fallback: str) -> str:
        try:
            data = httpx.get(f"{self.base_url}/v1/models", timeout=10.0).json()["data"]
            return str(data[0]["id"])
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            return fallback

    def log_tail(self, num_chars: int = 600) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return text[-num_chars:].replace("\n", " | ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.close()


def measure_server(
    name: str,
    cmd: list[str],
    port: int,
    args: argparse.Namespace,
    *,
    ignore_eos: bool,
    model_fallback: str,
) -> dict[str, Any]:
    """Start, warm, load at each concurrency (and the shape test), stop. Never raises on a
    server failure: the result says what went wrong."""
    print(f"\n== {name}: {shlex.join(cmd)}", flush=True)
    server = Server(name, cmd, port)
    result: dict[str, Any] = {"name": name, "cmd": shlex.join(cmd), "levels": {}}
    try:
        why = server.wait_healthy(args.health_timeout)
        if why is not None:
            result["error"] = why
            print(f"   {name} not usable: {why}", flush=True)
            return result
        model = server.model_name(model_fallback)
        result["model"] = model
        common = dict(
            prompt=args.prompt,
            max_tokens=args.max_tokens,
            ignore_eos=ignore_eos,
            timeout_s=args.request_timeout,
            temperature=args.temperature,
        )
        url = server.base_url
        asyncio.run(run_load(url, model, concurrency=1, num_requests=args.warmup, **common))
        for c in args.levels:
            n = args.num_prompts if args.num_prompts else max(16, 4 * c)
            m = asyncio.run(run_load(url, model, concurrency=c, num_requests=n, **common))
            result["levels"][c] = m
            print(format_line(f"   {name:<13s}", m), flush=True)
        if args.shape_clients:
            c = args.shape_clients
            shape = asyncio.run(run_load(url, model, concurrency=c, num_requests=c, **common))
            result["shape"] = shape
            print(format_line(f"   {name:<13s}(shape) ", shape), flush=True)
    finally:
        server.stop()
    return result


def measure_runner_levels(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    from runner_baseline import measure_runner

    from tandem.engine.loader import load_model

    loaded = load_model("default")
    out = {}
    print("\n== bare runner (ModelRunner, greedy, ignore_eos)", flush=True)
    for c in args.levels:
        out[c] = measure_runner(
            loaded, c, max_tokens=args.max_tokens, prompt=args.prompt, repeats=args.repeats
        )
        print(
            f"   runner        c={c:<4d} out_tok/s={out[c]['output_throughput']:8.1f}", flush=True
        )
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _cell(levels: dict[int, Any], c: int, key: str, fmt: str) -> str:
    m = levels.get(c)
    return format(m[key], fmt) if m else "-"


def print_table(
    tandem: dict[str, Any], tf: dict[str, Any], runner: dict[int, Any], levels: list[int]
) -> str:
    """Print the table; return the one-line summary."""
    tl, fl = tandem.get("levels", {}), tf.get("levels", {})
    head = (
        f"{'c':>4} | {'runner tok/s':>12} | {'tandem tok/s':>12} | {'tf tok/s':>9} | "
        f"{'tandem/runner':>13} | {'tandem/tf':>9} | {'TTFT p50/p99 ms (tandem; tf)':>32} | "
        f"{'TPOT p50/p99 ms (tandem; tf)':>30} | {'tf mean out':>11}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for c in levels:
        r = runner.get(c, {}).get("output_throughput")
        t = tl[c]["output_throughput"] if c in tl else None
        f = fl[c]["output_throughput"] if c in fl else None
        ttft = (
            f"{_cell(tl, c, 'median_ttft_ms', '.0f')}/{_cell(tl, c, 'p99_ttft_ms', '.0f')}; "
            f"{_cell(fl, c, 'median_ttft_ms', '.0f')}/{_cell(fl, c, 'p99_ttft_ms', '.0f')}"
        )
        tpot = (
            f"{_cell(tl, c, 'median_tpot_ms', '.1f')}/{_cell(tl, c, 'p99_tpot_ms', '.1f')}; "
            f"{_cell(fl, c, 'median_tpot_ms', '.1f')}/{_cell(fl, c, 'p99_tpot_ms', '.1f')}"
        )
        print(
            f"{c:>4} | {r or 0:>12.1f} | {t or 0:>12.1f} | {f or 0:>9.1f} | "
            f"{_ratio(t, r):>13} | {_ratio(t, f):>9} | {ttft:>32} | {tpot:>30} | "
            f"{_cell(fl, c, 'mean_output_tokens', '.1f'):>11}"
        )
    print(
        "(tf = transformers serve: no ignore_eos, its outputs end at EOS; 'tf mean out' is "
        "their real mean length. Tandem and the runner make exactly max_tokens.)"
    )
    if "error" in tandem:
        return f"summary: tandem serve not usable ({tandem['error'][:120]})"
    parts = []
    for c in _TARGET_LEVELS:
        if c in tl and c in runner:
            parts.append(f"c={c} {tl[c]['output_throughput'] / runner[c]['output_throughput']:.2f}")
    measured = all(c in tl and c in runner for c in _TARGET_LEVELS)
    met = measured and all(
        tl[c]["output_throughput"] >= _TARGET_RATIO * runner[c]["output_throughput"]
        for c in _TARGET_LEVELS
    )
    verdict = ("met" if met else "missed") if measured else "not measured"
    vs_tf = " ".join(
        f"c={c} {_ratio(tl[c]['output_throughput'], fl[c]['output_throughput'])}"
        for c in levels
        if c in tl and c in fl
    )
    failures = sum(m["num_errors"] + m["num_incomplete"] for m in tl.values())
    shape = ""
    if "shape" in tandem:
        m = tandem["shape"]
        shape = (
            f"; {m['concurrency']} clients at once: {m['completed']} complete, "
            f"{m['num_errors']} errors, {m['num_incomplete']} incomplete"
        )
    return (
        f"summary: tandem/runner {' '.join(parts) or '-'} (target >= {_TARGET_RATIO} at c=1,8: "
        f"{verdict}); tandem/transformers {vs_tf or '-'}; "
        f"tandem failed streams {failures}{shape}"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tandem-cmd", default=".venv/bin/tandem serve")
    p.add_argument("--tandem-args", default="--prefill 1 --decode 1 --backend local")
    p.add_argument("--transformers-bin", default="/work/tfserve-venv/bin/transformers")
    p.add_argument("--hf-dir", default="out/stories260K-hf")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--num-prompts", type=int, default=0, help="per level; 0: max(16, 4 x c)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="runner baseline repeats")
    p.add_argument("--shape-clients", type=int, default=0, help="e.g. 150; 0 skips")
    p.add_argument("--health-timeout", type=float, default=180.0)
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--skip", default="", help="comma list of tandem,transformers,runner")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    tandem: dict[str, Any] = {"error": "skipped", "levels": {}}
    tf: dict[str, Any] = {"error": "skipped", "levels": {}}
    runner: dict[int, Any] = {}
    if "tandem" not in args.skip:
        base = shlex.split(args.tandem_cmd)
        port = free_port()
        cmd = [*base, "--port", str(port), *shlex.split(args.tandem_args)]
        if _help_mentions(base, "--host"):
            cmd += ["--host", "127.0.0.1"]
        tandem = measure_server(
            "tandem", cmd, port, args, ignore_eos=True, model_fallback="stories260K"
        )
    if "transformers" not in args.skip:
        if not (Path(args.hf_dir) / "config.json").is_file():
            raise SystemExit(f"{args.hf_dir} has no config.json: run scripts/gguf_to_hf.py first")
        port = free_port()
        cmd = [
            args.transformers_bin,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--continuous-batching",
            args.hf_dir,
        ]
        tf = measure_server(
            "transformers", cmd, port, args, ignore_eos=False, model_fallback=args.hf_dir
        )
    if "runner" not in args.skip:
        runner = measure_runner_levels(args)
    summary = print_table(tandem, tf, runner, args.levels)
    print(summary)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"tandem": tandem, "transformers": tf, "runner": runner, "summary": summary},
                fh,
                indent=2,
                default=str,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
