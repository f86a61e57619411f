"""Closed-loop load against any OpenAI-compatible server (the command line of
``tandem.bench.load``): vLLM-style latency and throughput, one line per concurrency.

Usage: ``python benchmarks/serve_load.py --base-url http://127.0.0.1:8000 --model stories260K
--concurrency 1,8,32 --num-prompts 64 --max-tokens 128 [--ignore-eos] [--json FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tandem.bench.load import DEFAULT_PROMPT, format_line, run_load


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated list")
    parser.add_argument(
        "--num-prompts", type=int, default=None, help="requests per level (default 4 x c, >= 16)"
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--ignore-eos", action="store_true", help="send ignore_eos: true")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests first")
    parser.add_argument("--json", default=None, help="write every level's metrics here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    common = dict(
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        ignore_eos=args.ignore_eos,
        timeout_s=args.timeout,
        temperature=args.temperature,
    )
    if args.warmup > 0:
        warm = asyncio.run(
            run_load(args.base_url, args.model, concurrency=1, num_requests=args.warmup, **common)
        )
        if warm["num_errors"]:
            print(f"warm-up failed: {warm['error_samples']}", file=sys.stderr)
            return 1
    results = []
    for c in levels:
        n = args.num_prompts if args.num_prompts is not None else max(16, 4 * c)
        m = asyncio.run(
            run_load(args.base_url, args.model, concurrency=c, num_requests=n, **common)
        )
        results.append(m)
        print(format_line("", m), flush=True)
        for sample in m["error_samples"]:
            print(f"    {sample}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 1 if any(m["num_errors"] or m["num_incomplete"] for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
