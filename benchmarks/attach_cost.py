"""What attaching one request costs a decode batch, against one decode step of that batch.

``ModelRunner.attach`` (a migrated or handed-off request joining) re-pads the whole running
batch into a new left-padded cache (``RunningBatch.merge``). This measures, on the embedded
model, a batch of ``--batch`` requests of ``--context`` tokens each: the median time of one
decode step, and of attaching one more request of ``--kv`` tokens (then detaching it, so every
repeat sees the same batch). Last line: ``key=value`` pairs; ``attach_share`` is attach time
over step time.

Usage: ``python benchmarks/attach_cost.py [--batch 32] [--context 256] [--kv 480]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tandem.engine.loader import load_model
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import SamplingParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--kv", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model("default")
    runner = ModelRunner(loaded, max_batch_size=args.batch + 1)
    params = SamplingParams(temperature=0.0, max_new_tokens=16, ignore_eos=True)
    prompt = [1] + [100 + i % 50 for i in range(args.context - 1)]
    for _ in range(args.batch):
        runner.add_request(prompt, params)
    runner.step()  # prefill all
    donor = ModelRunner(loaded, max_batch_size=1)
    donor.add_request([1] + [200 + i % 30 for i in range(args.kv - 1)], params)
    donor.step()
    snapshot = donor.detach(0)  # the donor's only request
    steps, attaches = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        runner.step()
        steps.append(time.perf_counter() - start)
        start = time.perf_counter()
        seq_id = runner.attach(snapshot)
        attaches.append(time.perf_counter() - start)
        runner.detach(seq_id)
    step, attach = statistics.median(steps), statistics.median(attaches)
    print(
        f"batch {args.batch} x {args.context} tokens: decode step {1000 * step:.2f} ms; "
        f"attaching a {args.kv}-token request {1000 * attach:.2f} ms ({attach / step:.0%} of a "
        "step)"
    )
    share = attach / step
    print(f"step_ms={1000 * step:.3f} attach_ms={1000 * attach:.3f} attach_share={share:.3f}")


if __name__ == "__main__":
    main()
