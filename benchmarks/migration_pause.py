"""Live migration cost: the pause a migrated request sees and the whole migration's time.

For each backend (``local``: workers in this process; ``ray``: an actor per worker on a Ray
cluster of its own), ``tandem serve`` 1P2D; a greedy stream forced to ``--max-tokens`` is
moved to the other decode worker (``Controller.migrate``, what a rescheduler's ``Migration``
does) when its KV reaches each size in ``--kv-tokens``. Per size, ``--repeats`` times:

- pause: the gap in the client's stream, its last token from the source to its first from
  the destination (what ``tandem:migration_pause_seconds`` records), against the median gap
  between tokens of the same stream (its ITL, as the server saw it);
- end to end: reservation to commit (reserve, copy while decoding, stage, detach, commit);
- bytes copied; and whether the text equals the unmigrated request's (it must).

Usage: ``python benchmarks/migration_pause.py [--backends local,ray] [--kv-tokens 256,480]
[--repeats 5]``. Last line: ``key=value`` pairs (medians, ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import httpx
import torch

PROMPT = "Once upon a time"
PROMPT_TOKENS = 5  # with BOS


def stream(url: str, model: str, request_id: str, max_tokens: int) -> tuple[str, list[float]]:
    """The text of a greedy stream and the arrival time of each chunk."""
    body = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
    }
    text, times = [], []
    headers = {"X-Request-Id": request_id}
    with httpx.stream(
        "POST", f"{url}/v1/completions", json=body, headers=headers, timeout=120
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                text.append(json.loads(line[6:])["choices"][0]["text"])
                times.append(time.perf_counter())
    return "".join(text), times


def migrate_at(thread: Any, request_id: str, sent: int) -> None:
    """Start the migration once ``request_id`` has sent ``sent`` tokens."""
    controller = thread.server.front.controller

    def attempt() -> Any:
        request = controller.request(request_id)
        if request is None or request.decode_worker is None:
            return None
        if len(request.sent_token_ids) < sent:
            return None
        other = next(h.worker_id for h in controller.decode if h is not request.worker)
        return controller.migrate(request_id, other)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if thread.call(attempt) is not None:
            return
        time.sleep(0.001)
    raise SystemExit(f"could not start the migration of {request_id}")


def run_backend(backend: str, sizes: list[int], repeats: int, max_tokens: int) -> list[dict]:
    from tandem.serve.server import ServeConfig, ServerThread

    config = ServeConfig(backend=backend, port=0, num_decode=2, stream_interval_s=0.0)
    rows = []
    with ServerThread(config) as thread:
        url = thread.start(ready_timeout_s=600)
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        controller = thread.server.front.controller
        reference, _ = stream(url, model, f"{backend}-ref", max_tokens)
        for kv in sizes:
            for rep in range(repeats):
                request_id = f"{backend}-{kv}-{rep}"
                box: dict[str, Any] = {}
                client = threading.Thread(
                    target=lambda rid=request_id, box=box: box.update(
                        result=stream(url, model, rid, max_tokens)
                    )
                )
                client.start()
                migrate_at(thread, request_id, kv - PROMPT_TOKENS)
                client.join(120)
                text, times = box["result"]
                records = thread.call(
                    lambda rid=request_id: [
                        r for r in controller.migrations.records if r.request_id == rid
                    ]
                )
                pauses = thread.call(lambda: list(controller.migrations.pauses_s))
                record = records[-1]
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                rows.append(
                    {
                        "backend": backend,
                        "kv_tokens": kv,
                        "outcome": record.outcome,
                        "exact": text == reference,
                        "pause_ms": 1000 * pauses[-1],
                        "itl_ms": 1000 * statistics.median(gaps),
                        "end_to_end_ms": 1000 * record.duration_s,
                        "bytes": record.num_bytes,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,ray")
    parser.add_argument("--kv-tokens", default="256,480")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [int(x) for x in args.kv_tokens.split(",")]
    rows = []
    for backend in args.backends.split(","):
        rows += run_backend(backend, sizes, args.repeats, args.max_tokens)
    summary = []
    for backend in args.backends.split(","):
        for kv in sizes:
            sel = [r for r in rows if r["backend"] == backend and r["kv_tokens"] == kv]
            ok = sum(r["outcome"] == "migrated" and r["exact"] for r in sel)
            pause = statistics.median(r["pause_ms"] for r in sel)
            itl = statistics.median(r["itl_ms"] for r in sel)
            e2e = statistics.median(r["end_to_end_ms"] for r in sel)
            print(
                f"{backend} kv={kv}: {ok}/{len(sel)} migrated exactly; pause {pause:.1f} ms "
                f"(ITL {itl:.1f} ms), end to end {e2e:.1f} ms, {sel[0]['bytes'] / 1024:.0f} KiB",
                flush=True,
            )
            summary += [
                f"{backend}_kv{kv}_pause_ms={pause:.1f}",
                f"{backend}_kv{kv}_itl_ms={itl:.1f}",
                f"{backend}_kv{kv}_e2e_ms={e2e:.1f}",
                f"{backend}_kv{kv}_exact={ok}/{len(sel)}",
            ]
    print(" ".join(summary))


if __name__ == "__main__":
    main()
