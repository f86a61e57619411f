"""The live predictor's cost per decode step at batch 32, as a share of the step (issue 15).

What a decode worker pays for ``--prediction head`` each step, measured in one run beside the
steps themselves: ``LivePredictor.observe`` on the runner's ``StepOutput`` (the head on the rows
that are due, one batched call: rows seen for the first time, and every row on every
``refresh``-th step) plus ``remaining`` for every running row (what the worker's stats ask for
each step). The hidden states are the step's own; there is no extra forward.

Method: a decode ``ModelRunner`` of the embedded stories260K (tapping the head's layer) keeps
32 requests running in steady state, as a decode worker does: requests prefilled beforehand
by a second runner are attached as others finish (``ignore_eos``; output lengths drawn
uniformly from ``--min-tokens``..``--max-tokens`` with the seed, so they end at different
steps). After ``--refresh`` warm-up steps, each of ``--steps`` steps is timed, then the
predictor's work right after it (as in the worker, where it runs once the step returns).
Attaching is not timed. Reported: means over steps (the cost that adds up), medians, the
largest predictor step, and the share ``predictor / step`` of the means (target <= 1%); also
``observe`` alone (the head's part; ``remaining`` is asked by every source).

    .venv/bin/python benchmarks/predictor_cost.py [--steps 400] [--batch 32] [--refresh 20]
        [--source head|head:CKPT|progress-mean|oracle] [--json-out FILE]

Last line: ``source=<s> batch=<b> step_ms=<x> predictor_ms=<y> share_pct=<z>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from tandem.engine.loader import load_model
from tandem.engine.runner import ModelRunner
from tandem.engine.sampling import SamplingParams
from tandem.predict.prompts import OpeningSpec, story_openings
from tandem.serve.prediction import LivePredictor


def _prefilled(loaded, count: int, lengths: np.ndarray, seed: int) -> list:  # noqa: ANN001
    """``count`` snapshots of prefilled requests (first token generated), in order."""
    prompts = [list(p) for p in story_openings(loaded, OpeningSpec(count, seed=seed))]
    runner = ModelRunner(loaded, max_batch_size=64)
    snapshots = []
    for start in range(0, count, 64):
        seqs = []
        for i in range(start, min(count, start + 64)):
            params = SamplingParams(
                temperature=1.0, max_new_tokens=int(lengths[i]), ignore_eos=True, seed=i
            )
            seqs.append(runner.add_request(prompts[i], params))
        out = runner.step()
        assert out is not None and out.kind == "prefill"
        snapshots.extend(runner.detach(s) for s in seqs)
    return snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--refresh", type=int, default=20)
    parser.add_argument("--source", default="head")
    parser.add_argument("--min-tokens", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=450)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model("default")
    predictor = LivePredictor(
        args.source, refresh_tokens=args.refresh, identity=loaded.identity, min_samples=1
    )
    if predictor.kind == "progress-mean":
        for length in range(100, 500, 10):
            predictor.finished(length, natural=True)
    total_steps = args.refresh + args.steps
    mean_tokens = (args.min_tokens + args.max_tokens) / 2
    count = args.batch + int(2 * total_steps * args.batch / mean_tokens) + 8
    rng = np.random.default_rng(args.seed)
    lengths = rng.integers(args.min_tokens, args.max_tokens + 1, size=count)
    start = time.perf_counter()
    pool = _prefilled(loaded, count, lengths, args.seed)
    print(f"prefilled {count} requests in {time.perf_counter() - start:.1f} s", flush=True)
    runner = ModelRunner(loaded, tap_layers=predictor.tap_layers, max_batch_size=args.batch)
    names: dict[int, tuple[str, int]] = {}  # seq id -> (request id, max new tokens)
    step_ms, pred_ms, observe_ms, rows_per_step = [], [], [], []
    attached = 0
    for number in range(total_steps):
        while runner.num_running < args.batch and attached < count:
            seq = runner.attach(pool[attached])
            names[seq] = (f"r{attached}", int(lengths[attached]))
            attached += 1
        if runner.num_running < args.batch:
            break  # pool exhausted
        start = time.perf_counter()
        out = runner.step()
        step_s = time.perf_counter() - start
        assert out is not None and out.kind == "decode"
        request_ids = tuple(names[s][0] for s in out.seq_ids)
        rows_before = predictor.head_rows
        start = time.perf_counter()
        predictor.observe(request_ids, out)
        observe_s = time.perf_counter() - start
        for seq, count_now, reason in zip(
            out.seq_ids, out.num_output_tokens, out.finish_reasons, strict=True
        ):
            if reason is None:
                request_id, limit = names[seq]
                predictor.remaining(request_id, count_now, limit, True)
        pred_s = time.perf_counter() - start
        for seq, reason in zip(out.seq_ids, out.finish_reasons, strict=True):
            if reason is not None:
                predictor.forget(names.pop(seq)[0])
        runner.collect_finished()
        if number >= args.refresh:
            step_ms.append(step_s * 1000.0)
            pred_ms.append(pred_s * 1000.0)
            observe_ms.append(observe_s * 1000.0)
            rows_per_step.append(predictor.head_rows - rows_before)
    step, pred = float(np.mean(step_ms)), float(np.mean(pred_ms))
    rows = np.asarray(rows_per_step)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "source": args.source,
        "batch": args.batch,
        "refresh_tokens": args.refresh,
        "steps_timed": len(step_ms),
        "requests_attached": attached,
        "head_params": None
        if predictor.head is None
        else sum(p.numel() for p in predictor.head.head.parameters()),
        "steps_with_head_call_pct": 100.0 * float(np.mean(rows > 0)),
        "head_rows_per_step": float(rows.mean()),
        "decode_step_ms_mean": step,
        "decode_step_ms_median": float(np.median(step_ms)),
        "predictor_ms_mean": pred,
        "predictor_ms_median": float(np.median(pred_ms)),
        "predictor_ms_max": float(np.max(pred_ms)),
        "observe_ms_mean": float(np.mean(observe_ms)),
        "remaining_ms_mean": pred - float(np.mean(observe_ms)),
        "observe_share_pct_of_step": 100.0 * float(np.mean(observe_ms)) / step,
        "share_pct_of_step": 100.0 * pred / step,
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2))
    print(
        f"source={args.source} batch={args.batch} step_ms={step:.3f} "
        f"predictor_ms={pred:.4f} share_pct={report['share_pct_of_step']:.2f}"
    )


if __name__ == "__main__":
    main()
