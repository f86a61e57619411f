"""Make the ARES head that ships for stories260K (``src/tandem/predict/data/stories260k_head.pt``).

``tandem serve --prediction head`` runs it. Steps, each seeded:

1. collect: ``tandem predict collect --model default --num-requests 2000 --every 20 --seed 0``
   (sampling at T = 1 from the model's own story openings; about 10 minutes on one core);
   ``--data FILE`` reuses a collected file.
2. train: ``tandem predict train --widths 256,64,16 --seed 0 --threads 1`` (every predictor of
   the 70/15/15 request split; the widths are the scaled head of docs/benchmarks_predict.md,
   0.7% of a decode step at batch 32 where the paper's 2048/512/64 cost 10%).
3. choose, on the validation split: among the hidden-state heads (``ares``, ``ares_log``,
   ``ares_progress``) the one with the lowest validation MAE (``--head`` forces one).
4. report on the test split, as served: every prediction capped by what the context leaves
   (``min(pred, context - prompt - g)``, what ``LivePredictor.remaining`` does), beside
   ``progress-mean`` computed by the live rule itself (``LivePredictor("progress-mean")`` fed
   the training requests that ended at end-of-story), the baseline the head must beat.
5. write the chosen head alone (``PredictorBundle.for_serving``: no TRAIL, no other heads),
   with this report in its ``train_log["provenance"]``.

    .venv/bin/python scripts/train_stories_head.py [--data FILE] [--head auto|ares|...]
        [--out-dir out/stories_head] [--out src/tandem/predict/data/stories260k_head.pt]

Last line: ``head=<name> head_test_mae=<x> progress_mean_test_mae=<y> bytes=<n>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tandem.predict import metrics
from tandem.predict.checkpoint import PredictorBundle, load_bundle
from tandem.predict.dataset import LengthSamples, load_samples
from tandem.predict.online import LengthPredictor
from tandem.serve.prediction import LivePredictor

HEADS = ("ares", "ares_log", "ares_progress")
TANDEM = str(Path(sys.executable).with_name("tandem"))


def _run(args: list[str]) -> None:
    print("$ tandem " + " ".join(args), flush=True)
    subprocess.run([TANDEM, *args], check=True)


def _served_report(samples: LengthSamples, bundle: PredictorBundle) -> dict[str, Any]:
    """Test-split MAE and concurrent Kendall tau of each head and of the live progress-mean,
    every prediction capped by the context's room (see the module docstring)."""
    split = bundle.split(samples)
    rid_all = samples["sample_request_id"]
    test = split.mask(rid_all, "test")
    rows = samples.request_index()[test]
    g = samples["sample_tokens_generated"][test].astype(np.int64)
    true = samples["sample_remaining_tokens"][test].astype(np.float64)
    prompt = samples["request_prompt_tokens"][rows].astype(np.int64)
    room = (samples.identity.context_tokens - prompt - g).clip(min=0).astype(np.float64)
    hidden = torch.from_numpy(np.ascontiguousarray(samples["sample_hidden"][test])).float()
    preds: dict[str, np.ndarray] = {}
    for name in HEADS:
        head = LengthPredictor.from_bundle(bundle, name)
        out = head.predict(hidden, torch.from_numpy(g)).numpy().astype(np.float64)
        preds[name] = np.minimum(out, room)
    # the checkpoint's mean-by-progress table (offline twin of progress-mean), capped alike
    preds["mean-table"] = np.minimum(bundle.tables["mean"].predict(g), room)
    # progress-mean as LivePredictor computes it, from the training requests' lengths
    live = LivePredictor("progress-mean", min_samples=1, window=10**6)
    train_requests = split.mask(samples["request_id"], "train")
    for length, eos in zip(
        samples["request_output_tokens"][train_requests],
        samples["request_finished_eos"][train_requests],
        strict=True,
    ):
        live.finished(int(length), natural=bool(eos))
    max_new = samples.identity.context_tokens - prompt
    preds["progress-mean"] = np.array(
        [
            live.remaining(f"s{i}", int(gi), int(mi), ignore_eos=False) or 0.0
            for i, (gi, mi) in enumerate(zip(g, max_new, strict=True))
        ]
    )
    rid = rid_all[test]
    return {
        "num_test_samples": int(g.size),
        "mae": {n: metrics.mae(p, true) for n, p in preds.items()},
        "mae_by_progress": {n: metrics.mae_by_progress(p, true, g) for n, p in preds.items()},
        "kendall_tau_concurrent": {
            n: metrics.concurrent_kendall_tau(p, true, rid, seed=0) for n, p in preds.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="reuse this sample file (skips collect)")
    parser.add_argument("--num-requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="256,64,16")
    parser.add_argument("--head", default="auto", choices=("auto", *HEADS))
    parser.add_argument("--out-dir", type=Path, default=Path("out/stories_head"))
    parser.add_argument(
        "--out", type=Path, default=Path("src/tandem/predict/data/stories260k_head.pt")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    commands = []
    data = args.data
    if data is None:
        data = args.out_dir / f"samples_{args.num_requests}_seed{args.seed}.npz"
        collect = ["predict", "collect", "--model", "default", "--num-requests"]
        collect += [str(args.num_requests), "--every", "20", "--seed", str(args.seed)]
        collect += ["--threads", "1", "--out", str(data)]
        _run(collect)
        commands.append("tandem " + " ".join(collect))
    full = args.out_dir / "full.pt"
    train = ["predict", "train", "--data", str(data), "--out", str(full)]
    train += ["--widths", args.widths, "--seed", str(args.seed), "--threads", "1"]
    start = time.perf_counter()
    _run(train)
    commands.append("tandem " + " ".join(train))
    train_s = time.perf_counter() - start
    samples = load_samples(data)
    bundle = load_bundle(full, samples.identity)
    val = {n: bundle.val_mae[n] for n in HEADS}
    choice = min(val, key=lambda n: val[n]) if args.head == "auto" else args.head
    report = _served_report(samples, bundle)
    provenance = {
        "script": "scripts/train_stories_head.py",
        "commands": commands,
        "data": {
            "file": data.name,
            "num_requests": samples.num_requests,
            "num_samples": samples.num_samples,
            "split": {p: int(bundle.split(samples).ids(p).size) for p in ("train", "val", "test")},
        },
        "seed": args.seed,
        "widths": args.widths,
        "chosen_by": "lowest validation MAE" if args.head == "auto" else "--head",
        "head": choice,
        "val_mae": val,
        "test_served": report,
        "train_seconds": round(train_s, 1),
    }
    slim = bundle.for_serving(choice)
    slim.train_log = {**slim.train_log, "provenance": provenance}
    slim.save(args.out)
    (args.out_dir / "report.json").write_text(json.dumps(provenance, indent=2))
    print(json.dumps(provenance, indent=2))
    mae = report["mae"]
    print(
        f"head={choice} head_test_mae={mae[choice]:.2f} "
        f"progress_mean_test_mae={mae['progress-mean']:.2f} bytes={args.out.stat().st_size}"
    )


if __name__ == "__main__":
    main()
