"""Evaluation of every predictor on the test requests of the training split.

Predictors (all see only what a live system would see at that sample):

- ``mean`` / ``median``: training statistic of remaining length given tokens generated so far.
- ``prompt_only``: one prediction from the last prompt token's state; at g tokens generated it
  predicts max(initial - g, 0) (never refined), standing in for prompt-based predictors.
- ``trail``: middle-layer bin classifier refined by Bayesian updating (posterior median;
  ``trail_mean`` is the posterior mean).
- ``ares`` / ``ares_log``: the regression head on the newest token's last-layer state (raw L1
  target / log target); ``ares_progress``: the same plus log(1 + tokens generated).

Report: MAE overall and by progress bucket, Kendall tau (concurrent-batch and same-step
definitions, see ``metrics``), parameter counts, and the ARES / prompt-only MAE ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tandem.errors import ConfigError
from tandem.predict import metrics, trail
from tandem.predict.checkpoint import PredictorBundle
from tandem.predict.dataset import LengthSamples
from tandem.predict.train import trail_inputs

PREDICTORS = (
    "mean",
    "median",
    "prompt_only",
    "trail",
    "trail_mean",
    "ares",
    "ares_log",
    "ares_progress",
)


@dataclass(frozen=True)
class SplitPredictions:
    """Per test sample: ids, truth and each predictor's predicted remaining tokens."""

    request_id: np.ndarray
    generated: np.ndarray
    remaining: np.ndarray
    predictions: dict[str, np.ndarray]

    @property
    def total(self) -> np.ndarray:
        return self.generated + self.remaining


def _run(module: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return module(torch.from_numpy(np.ascontiguousarray(x)).float())


def split_predictions(
    samples: LengthSamples, bundle: PredictorBundle, part: str = "test"
) -> SplitPredictions:
    """Every predictor's output on the samples of ``part`` of the bundle's split."""
    bundle.require_full()
    assert bundle.trail is not None
    if (bundle.layer, bundle.mid_layer) != (samples.layer, samples.mid_layer):
        raise ConfigError(
            f"checkpoint reads layers {bundle.layer}/{bundle.mid_layer}, the data holds "
            f"{samples.layer}/{samples.mid_layer}"
        )
    rid_all = samples["sample_request_id"]
    sel = bundle.split(samples).mask(rid_all, part)
    rid, g = rid_all[sel], samples["sample_tokens_generated"][sel].astype(np.int64)
    remaining = samples["sample_remaining_tokens"][sel].astype(np.int64)
    preds: dict[str, np.ndarray] = {}
    for name, table in bundle.tables.items():
        preds[name] = table.predict(g)
    hidden = torch.from_numpy(np.ascontiguousarray(samples["sample_hidden"][sel])).float()
    for name in (n for n in bundle.heads if n.startswith("ares")):
        with torch.inference_mode():
            preds[name] = bundle.heads[name].predict(hidden, torch.from_numpy(g)).numpy()
    prompt_head = bundle.heads["prompt_only"]
    rows = samples.request_index()[sel]
    initial = prompt_head.decode_output(
        _run(prompt_head, samples["request_prompt_hidden"][rows])
    ).numpy()
    preds["prompt_only"] = np.maximum(initial - g, 0.0)
    probs = (
        torch.softmax(_run(bundle.trail, trail_inputs(samples)[sel]), dim=-1).numpy().astype(float)
    )
    posteriors = trail.refine(probs, g, rid, bundle.trail_edges)
    preds["trail"] = trail.posterior_median(posteriors, bundle.trail_edges)
    preds["trail_mean"] = trail.posterior_mean(posteriors, bundle.trail_edges)
    return SplitPredictions(rid, g, remaining, preds)


def evaluate_bundle(
    samples: LengthSamples, bundle: PredictorBundle, tau_seed: int = 0
) -> dict[str, Any]:
    """The JSON report (see the module docstring); overhead is added by ``overhead``."""
    tp = split_predictions(samples, bundle)
    names = [n for n in PREDICTORS if n in tp.predictions]
    split = bundle.split(samples)
    report: dict[str, Any] = {
        "model": samples.identity.to_dict(),
        "layer": samples.layer,
        "mid_layer": samples.mid_layer,
        "every_tokens": samples.every_tokens,
        "split": {
            "seed": bundle.split_seed,
            "num_requests": {p: int(split.ids(p).size) for p in ("train", "val", "test")},
            "num_test_samples": int(tp.generated.size),
        },
        "mae": {n: metrics.mae(tp.predictions[n], tp.remaining) for n in names},
        "mae_by_progress": {
            n: metrics.mae_by_progress(tp.predictions[n], tp.remaining, tp.generated) for n in names
        },
        "kendall_tau": {
            n: metrics.concurrent_kendall_tau(
                tp.predictions[n], tp.remaining, tp.request_id, seed=tau_seed
            )
            for n in names
        },
        "kendall_tau_same_step": {
            n: metrics.same_step_kendall_tau(tp.predictions[n], tp.remaining, tp.generated)
            for n in names
        },
        "num_params": bundle.num_params(),
        "ares_widths": list(bundle.heads["ares"].config.widths),
    }
    report["num_params"]["trail_mean"] = report["num_params"]["trail"]
    report["ratio_ares_to_prompt_only_mae"] = report["mae"]["ares"] / max(
        report["mae"]["prompt_only"], 1e-9
    )
    return report


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""
    names = list(report["mae"])
    buckets = list(next(iter(report["mae_by_progress"].values())))
    model, split = report["model"], report["split"]
    lines = [
        f"model {model['name']} (d={model['hidden_size']}), layer {report['layer']}, "
        f"test: {split['num_requests']['test']} requests / {split['num_test_samples']} samples",
        f"{'predictor':<12} {'MAE':>7} {'tau':>6} {'tau@g':>6} {'params':>9}  "
        + " ".join(f"{b:>8}" for b in buckets),
    ]
    for n in names:
        by = report["mae_by_progress"][n]
        lines.append(
            f"{n:<12} {report['mae'][n]:7.1f} {report['kendall_tau'][n]:6.3f} "
            f"{report['kendall_tau_same_step'][n]:6.3f} {report['num_params'].get(n, 0):9d}  "
            + " ".join(f"{by[b]['mae']:8.1f}" if b in by else f"{'-':>8}" for b in buckets)
        )
    lines.append(f"ares / prompt_only MAE ratio: {report['ratio_ares_to_prompt_only_mae']:.3f}")
    if "overhead_pct_of_decode_step" in report:
        o = report["overhead"]
        lines.append(
            f"overhead: ares {o['predictor_ms']:.3f} ms per call at batch {o['batch_size']} = "
            f"{o['overhead_pct_of_decode_step']:.2f}% of a {o['decode_step_ms']:.2f} ms decode step"
        )
    return "\n".join(lines)
