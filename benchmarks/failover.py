"""Decode workers killed under load: are requests lost, tokens repeated or missing?

1. The reference: each distinct prompt's greedy output (``--max-tokens`` tokens, ``ignore_eos``)
   from the bare ``ModelRunner``, computed once here, before any server runs.
2. ``tandem serve --backend ray`` (its own local Ray cluster: every worker an actor in its own
   process) with ``--prefill`` + ``--decode`` workers on a free 127.0.0.1 port; the decode
   workers' pids come from ``/health`` (``WorkerInfo.pid``).
3. ``--requests`` greedy streaming completions, ``--concurrency`` at a time (closed loop), the
   prompts in turn. Each time another ``1 / (kills + 1)`` of the requests has finished, one
   decode worker's process gets SIGKILL (the live one holding the most requests by
   ``/metrics``), until ``--kills`` are dead. Dead workers are not restarted.
4. Every stream is checked against its prompt's reference: **lost** = an HTTP error, an error
   event, or a stream without ``finish_reason``/``[DONE]`` or with usage other than
   ``--max-tokens``; **mismatched** = complete but its text differs from the reference. For a
   mismatched stream, duplicated and missing tokens are counted by aligning the stream's text
   with the reference's, both tokenized by the model's tokenizer (``difflib`` opcodes:
   inserted tokens are duplicated/extra, deleted ones missing, replaced ones both).
5. The server's log says how many requests were resumed after a kill (``resumes on prefill
   worker``); the server is stopped with SIGINT (graceful), then its session is killed if it
   lingers.

Last line: ``requests=... killed=... lost=... duplicated_tokens=... missing_tokens=...
mismatched=... resumed=...`` (target: lost 0, duplicated 0, over >= 200 requests, >= 3 kills).

    flock /tmp/tandem-ray.lock .venv/bin/python benchmarks/failover.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from soak import free_port, stop_server, wait_healthy

PROMPTS = [
    "Once upon a time",
    "The little dog",
    "Tom and Sue went to the park",
    "One day, a girl named Lily",
    "The sun was hot and",
    "A big red ball",
    "Mom said it was time",
    "There was a cat who",
]
TANDEM = str(Path(sys.executable).with_name("tandem"))


@dataclass
class Stream:
    prompt_index: int
    text: str = ""
    finish_reason: str | None = None
    saw_done: bool = False
    completion_tokens: int | None = None
    error: str | None = None
    done_s: float = 0.0


@dataclass
class Kill:
    worker_id: int
    pid: int
    after_requests: int
    at_s: float


@dataclass
class Outcome:
    lost: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    duplicated: int = 0
    missing: int = 0


def references(max_tokens: int) -> tuple[list[str], Any]:
    import torch

    from tandem.engine.loader import load_model
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    torch.set_num_threads(1)
    model = load_model("default")
    params = SamplingParams(temperature=0.0, max_new_tokens=max_tokens, ignore_eos=True)
    done = ModelRunner(model).generate([model.encode(p) for p in PROMPTS], params)
    return [model.decode(d.output_token_ids) for d in done], model


def env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


async def send(client: httpx.AsyncClient, url: str, body: dict[str, Any], stream: Stream) -> None:
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread())[:200].decode(errors="replace")
                stream.error = f"HTTP {response.status_code}: {text}"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    stream.saw_done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    stream.error = f"error event: {json.dumps(event['error'])[:200]}"
                    break
                if event.get("usage"):
                    stream.completion_tokens = int(event["usage"]["completion_tokens"])
                for choice in event.get("choices") or ():
                    stream.text += choice.get("text") or ""
                    stream.finish_reason = choice.get("finish_reason") or stream.finish_reason
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        stream.error = f"{type(exc).__name__}: {str(exc)[:200]}"


async def decode_load(client: httpx.AsyncClient, url: str) -> dict[int, int]:
    """Decode worker id -> requests in its batch and queue (its latest stats, /metrics)."""
    load: dict[int, int] = {}
    with contextlib.suppress(httpx.HTTPError):
        for line in (await client.get(f"{url}/metrics")).text.splitlines():
            gauge = line.startswith(
                ("tandem:num_requests_running{", "tandem:num_requests_waiting{")
            )
            match = re.search(r'instance="(\d+)"', line)
            if gauge and 'role="decode"' in line and match:
                worker = int(match.group(1))
                load[worker] = load.get(worker, 0) + int(float(line.rsplit(" ", 1)[1]))
    return load


async def run_load(
    url: str, model: str, args: argparse.Namespace, victims: list[tuple[int, int]]
) -> tuple[list[Stream], list[Kill], float]:
    streams = [Stream(i % len(PROMPTS)) for i in range(args.requests)]
    kills: list[Kill] = []
    slots = asyncio.Semaphore(args.concurrency)
    step = args.requests // (args.kills + 1)
    thresholds = [step * (k + 1) for k in range(args.kills)]
    finished = 0
    start = time.monotonic()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=0)
    timeout = httpx.Timeout(args.request_timeout, connect=30.0)

    async def maybe_kill(probe: httpx.AsyncClient) -> None:
        while thresholds and finished >= thresholds[0] and victims:
            thresholds.pop(0)
            # The busiest live decode worker (requests in its batch and queue, /metrics).
            load = await decode_load(probe, url)
            worker_id, pid = max(victims, key=lambda v: load.get(v[0], 0))
            victims.remove((worker_id, pid))
            os.kill(pid, signal.SIGKILL)
            kills.append(Kill(worker_id, pid, finished, time.monotonic() - start))
            print(
                f"  killed decode worker {worker_id} (pid {pid}, {load.get(worker_id, 0)} "
                f"requests by /metrics) after {finished} requests finished, "
                f"t={time.monotonic() - start:.1f} s",
                flush=True,
            )

    async def one(stream: Stream, client: httpx.AsyncClient, probe: httpx.AsyncClient) -> None:
        nonlocal finished
        body = {
            "model": model,
            "prompt": PROMPTS[stream.prompt_index],
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with slots:
            await send(client, url, body, stream)
        stream.done_s = time.monotonic() - start
        finished += 1
        await maybe_kill(probe)

    async with (
        httpx.AsyncClient(limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(timeout=30.0) as probe,
    ):
        await asyncio.gather(*(one(s, client, probe) for s in streams))
    return streams, kills, time.monotonic() - start


def judge(streams: list[Stream], refs: list[str], model: Any, max_tokens: int) -> Outcome:
    out = Outcome()
    for index, stream in enumerate(streams):
        complete = (
            stream.error is None
            and stream.finish_reason is not None
            and stream.saw_done
            and stream.completion_tokens == max_tokens
        )
        if not complete:
            out.lost.append(index)
            continue
        ref = refs[stream.prompt_index]
        if stream.text == ref:
            continue
        out.mismatched.append(index)
        got, want = model.encode(stream.text), model.encode(ref)
        matcher = difflib.SequenceMatcher(a=want, b=got, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag in ("insert", "replace"):
                out.duplicated += j2 - j1
            if tag in ("delete", "replace"):
                out.missing += i2 - i1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prefill", type=int, default=1)
    parser.add_argument("--decode", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--health-timeout", type=float, default=300.0)
    parser.add_argument("--log", type=Path, default=None, help="Keep the server's log here.")
    args = parser.parse_args()
    if args.kills >= args.decode:
        parser.error("--kills must leave at least one decode worker alive")

    t0 = time.monotonic()
    refs, model = references(args.max_tokens)
    took = time.monotonic() - t0
    print(f"references: {len(refs)} prompts x {args.max_tokens} tokens ({took:.1f} s)")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = args.log or Path(tempfile.mkstemp(prefix="failover-", suffix=".log")[1])
    cmd = [
        TANDEM, "serve", "--backend", "ray", "--port", str(port),
        "--prefill", str(args.prefill), "--decode", str(args.decode),
        "--max-batch", str(args.max_batch),
    ]  # fmt: skip
    print("server:", " ".join(cmd[1:]), f"(log {log_path})", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True
        )
    try:
        health = wait_healthy(url, proc, log_path, args.health_timeout)
        decode = sorted((w["id"], w["pid"]) for w in health["workers"] if w["role"] == "decode")
        print("decode workers (id, pid):", decode, flush=True)
        served = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        streams, kills, wall_s = asyncio.run(run_load(url, served, args, list(decode)))
        after = httpx.get(f"{url}/health", timeout=10)
        print(f"/health after: {after.status_code} {after.text[:300]}")
    finally:
        stop_server(proc)
    log_text = log_path.read_text(errors="replace")
    # The requests each dead worker held: the resumes logged after its "is gone" line.
    per_kill = [
        len(re.findall(r"resumes on prefill worker", part))
        for part in re.split(r"decode worker \d+ is gone", log_text)[1:]
    ]
    resumed = sum(per_kill)
    mid_stream = len(
        re.findall(r"resumes on prefill worker \d+ after (?:[2-9]|\d\d+) tokens", log_text)
    )
    failed_lines = [line for line in log_text.splitlines() if "failed" in line][:5]
    outcome = judge(streams, refs, model, args.max_tokens)

    print(
        f"\nrequests sent:        {len(streams)} ({args.concurrency} at a time, "
        f"{args.max_tokens} tokens each, {len(PROMPTS)} distinct prompts), {wall_s:.1f} s"
    )
    print(f"decode workers killed: {len(kills)} of {args.decode}")
    print(
        f"requests resumed:     {resumed} ({', '.join(map(str, per_kill))} per kill; "
        f"{mid_stream} after more than their first token), from the server log"
    )
    print(f"requests lost:        {len(outcome.lost)}")
    for index in outcome.lost[:5]:
        s = streams[index]
        print(f"  #{index}: error={s.error} finish={s.finish_reason} done={s.saw_done} "
              f"usage={s.completion_tokens}")  # fmt: skip
    print(f"mismatched outputs:   {len(outcome.mismatched)}")
    print(f"tokens duplicated:    {outcome.duplicated}")
    print(f"tokens missing:       {outcome.missing}")
    if failed_lines:
        print("server log lines with 'failed':", *failed_lines, sep="\n  ")
    print(
        f"requests={len(streams)} killed={len(kills)} lost={len(outcome.lost)} "
        f"duplicated_tokens={outcome.duplicated} missing_tokens={outcome.missing} "
        f"mismatched={len(outcome.mismatched)} resumed={resumed} "
        f"resumed_mid_stream={mid_stream} wall_s={wall_s:.1f}"
    )


if __name__ == "__main__":
    main()
