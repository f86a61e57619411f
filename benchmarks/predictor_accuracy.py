"""Accuracy and cost of the remaining-length predictor (ARES head) against its baselines.

End to end on the embedded stories260K model: collect (story openings as prompts, sampling,
a sample every 20 tokens) -> train (ARES head raw and log target, prompt-only head, TRAIL,
progress tables; 70/15/15 split by request) -> eval (MAE overall and by progress, Kendall tau,
parameters, predictor latency at batch 32 as a share of one decode step, measured in one run).
Give ``--data`` to reuse a collected file (and ``--ckpt`` to reuse a checkpoint).

    .venv/bin/python benchmarks/predictor_accuracy.py [--num-requests 2000] [--data FILE]
        [--ckpt FILE] [--widths 2048,512,64] [--out-dir out/predictor_bench]
        [--error-model-out FILE.json]

Large files go to ``--out-dir`` (default ``out/predictor_bench``, git-ignored).
Last line: ``ares_mae=<x> prompt_only_mae=<y> ratio=<x/y> overhead_pct=<z>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tandem.engine.loader import load_model
from tandem.predict.checkpoint import PredictorBundle, load_bundle
from tandem.predict.collect import CollectSpec, collect_samples
from tandem.predict.dataset import LengthSamples, load_samples, save_samples
from tandem.predict.error_model_build import build_error_model
from tandem.predict.evaluate import evaluate_bundle, format_report, split_predictions
from tandem.predict.overhead import measure_overhead
from tandem.predict.prompts import OpeningSpec, story_openings
from tandem.predict.train import TrainSpec, train_bundle


def _collect(args: argparse.Namespace, out_dir: Path) -> LengthSamples:
    loaded = load_model("default")
    start = time.perf_counter()
    spec = OpeningSpec(num_prompts=args.num_requests, seed=args.seed)
    prompts = [list(p) for p in story_openings(loaded, spec)]
    samples = collect_samples(
        loaded,
        prompts,
        CollectSpec(every_tokens=args.every, seed=args.seed),
        notes={"model_spec": "default", "prompt_set": {"kind": "story_openings", **spec.__dict__}},
    )
    path = save_samples(samples, out_dir / "samples.npz")
    print(f"collect: {samples.num_samples} samples, {time.perf_counter() - start:.0f} s -> {path}")
    return samples


def _train(args: argparse.Namespace, samples: LengthSamples, out_dir: Path) -> PredictorBundle:
    torch.set_num_threads(args.train_threads)
    widths = tuple(int(w) for w in args.widths.split(","))
    start = time.perf_counter()
    bundle = train_bundle(samples, TrainSpec(widths=widths, seed=args.seed), log=print)
    path = bundle.save(out_dir / "predictor.pt")
    print(f"train: {time.perf_counter() - start:.0f} s -> {path}")
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="reuse this sample file (skips collect)")
    parser.add_argument("--ckpt", type=Path, help="reuse this checkpoint (skips train)")
    parser.add_argument("--num-requests", type=int, default=2000)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="2048,512,64")
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("out/predictor_bench"))
    parser.add_argument("--error-model-out", type=Path, help="also export the error model here")
    parser.add_argument("--json-out", type=Path, help="also write the full report as JSON here")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    samples = load_samples(args.data) if args.data else _collect(args, args.out_dir)
    if args.ckpt:
        bundle = load_bundle(args.ckpt, samples.identity)
    else:
        bundle = _train(args, samples, args.out_dir)
    torch.set_num_threads(1)  # model and predictor timed under the same settings
    report = evaluate_bundle(samples, bundle)
    report["overhead"] = measure_overhead(
        "default", bundle, samples.identity, prompts=samples.prompts()
    )
    report["overhead_pct_of_decode_step"] = report["overhead"]["overhead_pct_of_decode_step"]
    print(format_report(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.error_model_out:
        model = build_error_model(
            split_predictions(samples, bundle), "ares", source=bundle.describe(samples)
        )
        print(f"error model: {model.save(args.error_model_out)} ({model.summary()})")
    ares, prompt_only = report["mae"]["ares"], report["mae"]["prompt_only"]
    print(
        f"ares_mae={ares:.2f} prompt_only_mae={prompt_only:.2f} "
        f"ratio={ares / prompt_only:.3f} overhead_pct={report['overhead_pct_of_decode_step']:.3f}"
    )


if __name__ == "__main__":
    main()
