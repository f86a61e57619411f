"""The real part of ``tandem demo``: serve the embedded model and send it a burst over HTTP.

1. ``tandem serve``'s server starts on a free 127.0.0.1 port (1 prefill + 2 decode workers).
2. A burst of streaming completions (fixed length, ``ignore_eos``) goes out at once through
   HTTP, the way clients would send it.
3. The served TTFT, TPOT and output tokens/s (vLLM's definitions) are printed, and the server
   is stopped.
"""

from __future__ import annotations

import asyncio
import time

import typer

from tandem.bench.load import run_load
from tandem.commands._output import print_table

DEMO_SERVE_TOKENS = 64


def print_served_burst(backend: str, num_requests: int) -> None:
    """Start the embedded server, send ``num_requests`` concurrent streams, print the figures."""
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
        typer.echo(
            f"  ready at {url} after {time.perf_counter() - start:.0f} s; sending "
            f"{num_requests} concurrent requests of {DEMO_SERVE_TOKENS} tokens"
        )
        model = thread.server.front.model_name
        m = asyncio.run(
            run_load(
                url,
                model,
                concurrency=num_requests,
                num_requests=num_requests,
                max_tokens=DEMO_SERVE_TOKENS,
                ignore_eos=True,
                timeout_s=120,
            )
        )
    failed = m["num_errors"] + m["num_incomplete"]
    typer.echo(f"  {m['completed']} of {num_requests} requests complete, {failed} failed")
    print_table(
        f"Served by tandem serve ({backend})",
        ["", "p50", "p99"],
        [
            ["TTFT ms", f"{m['median_ttft_ms']:.0f}", f"{m['p99_ttft_ms']:.0f}"],
            ["TPOT ms", f"{m['median_tpot_ms']:.1f}", f"{m['p99_tpot_ms']:.1f}"],
            ["output tokens/s", f"{m['output_throughput']:.0f}", ""],
        ],
    )
