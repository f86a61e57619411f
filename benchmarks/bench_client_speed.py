"""Speed of the benchmark client itself: streamed tokens/s and concurrent streams, one process.

1. A fast local endpoint starts in its own process (uvicorn + FastAPI on 127.0.0.1): every
   completion streams ``--tokens`` one-token SSE chunks as fast as it can, then usage and
   ``[DONE]`` (the same shape Tandem and vLLM send). It does no model work, so the pair measures
   the client's ceiling (on 2 cores the endpoint's own CPU use bounds it from below).
2. ``tandem.bench.openloop.run_requests`` sends ``--streams`` requests at once (the code
   ``tandem bench serve`` uses) and every stream is read to its end.
3. Prints the client's received tokens/s, the streams that completed, its CPU use.

Last line: ``client_tokens_per_s=<n> streams=<n> completed=<n> client_cpu_pct=<n>``.
Usage: ``python benchmarks/bench_client_speed.py [--streams 256] [--tokens 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx


def serve(port: int, tokens: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "fast", "object": "model"}]}

    @app.post("/v1/completions")
    async def completions() -> StreamingResponse:
        async def events():  # noqa: ANN202
            chunk = json.dumps({"choices": [{"index": 0, "text": "x", "finish_reason": None}]})
            for _ in range(tokens - 1):
                yield f"data: {chunk}\n\n".encode()
                await asyncio.sleep(0)
            last = {"choices": [{"index": 0, "text": "y", "finish_reason": "length"}]}
            usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": tokens}}
            tail = f"data: {json.dumps(last)}\n\ndata: {json.dumps(usage)}\n\n"
            yield (tail + "data: [DONE]\n\n").encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.tokens)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--tokens", str(args.tokens)]
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the fast endpoint did not start") from None
                time.sleep(0.2)
        from tandem.bench.openloop import RequestSpec, run_requests

        specs = [RequestSpec(0.0, "hi", args.tokens) for _ in range(args.streams)]
        cpu0 = time.process_time()
        result = asyncio.run(run_requests(url, "fast", specs, ignore_eos=False, timeout_s=120))
        cpu = time.process_time() - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    done = [r for r in result.records if r is not None and r.error is None and r.complete]
    tokens = sum(r.record().output_tokens for r in done)
    rate = tokens / result.duration_s
    print(
        f"{len(done)} of {args.streams} streams complete, {tokens} tokens in "
        f"{result.duration_s:.2f} s, client CPU {cpu:.2f} s"
    )
    print(
        f"client_tokens_per_s={rate:.0f} streams={args.streams} completed={len(done)} "
        f"client_cpu_pct={100 * cpu / result.duration_s:.0f}"
    )


if __name__ == "__main__":
    main()
