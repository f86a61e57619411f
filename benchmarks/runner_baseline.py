"""Bare-engine output tokens/s: the denominator of "served tokens/s >= 0.8x the bare runner".

For each batch size c: one ``ModelRunner`` gets c copies of a prompt, each generating exactly
``max_tokens`` tokens (greedy, ``ignore_eos``), and runs them to completion. Time covers the
whole run (prefill included, as a served request's does); output tokens/s = c x max_tokens /
time. Each level runs ``--repeats`` times after one untimed warm-up; the median is reported.
Torch runs on one thread (more threads on this shared 2-core box are far slower).

Usage: ``.venv/bin/python benchmarks/runner_baseline.py [--concurrency 1,8,32]
[--max-tokens 128] [--repeats 3] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

DEFAULT_PROMPT = "Once upon a time, there was a little girl"


def measure_runner(
    loaded: Any, batch_size: int, *, max_tokens: int, prompt: str, repeats: int
) -> dict[str, Any]:
    """Median output tokens/s of ``batch_size`` prompts x ``max_tokens`` on a fresh runner."""
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    params = SamplingParams(temperature=0.0, max_new_tokens=max_tokens, ignore_eos=True)
    prompt_ids = loaded.encode(prompt)
    prompts = [prompt_ids] * batch_size
    ModelRunner(loaded, max_batch_size=batch_size).generate(prompts, params)  # warm-up
    rates, seconds = [], []
    for _ in range(repeats):
        runner = ModelRunner(loaded, max_batch_size=batch_size)
        start_s = time.perf_counter()
        done = runner.generate(prompts, params)
        elapsed_s = time.perf_counter() - start_s
        tokens = sum(f.num_output_tokens for f in done)
        if tokens != batch_size * max_tokens:
            raise RuntimeError(f"expected {batch_size * max_tokens} tokens, got {tokens}")
        rates.append(tokens / elapsed_s)
        seconds.append(elapsed_s)
    median_s = statistics.median(seconds)
    return {
        "concurrency": batch_size,
        "max_tokens": max_tokens,
        "output_throughput": statistics.median(rates),
        "output_throughput_all": rates,
        "seconds": median_s,
        "ms_per_step": 1000.0 * median_s / max_tokens,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from tandem.engine.loader import load_model

    loaded = load_model(args.model)
    results = []
    for c in (int(x) for x in args.concurrency.split(",") if x.strip()):
        m = measure_runner(
            loaded, c, max_tokens=args.max_tokens, prompt=args.prompt, repeats=args.repeats
        )
        results.append(m)
        spread = "/".join(f"{r:.0f}" for r in m["output_throughput_all"])
        print(
            f"runner c={c:<4d} out_tok/s={m['output_throughput']:8.1f}  "
            f"ms/step={m['ms_per_step']:.2f}  (runs: {spread})",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
