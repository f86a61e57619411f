"""Training of every predictor on one request split (torch).

1. Split the requests 70/15/15 with the seed (``split.split_requests``).
2. ``ares`` / ``ares_log``: the regression head on each sample's newest-token state at the
   tapped layer, L1 loss on remaining tokens (raw, scaled by the training mean) or on
   log(1 + remaining). ``ares_progress``: the same head also fed log(1 + tokens generated).
3. ``prompt_only``: the same head shape, trained only on the last prompt token's state to
   predict the whole output length (it is never refined; see ``evaluate``).
4. ``trail``: the bin classifier on the middle layer (the prompt-mean state at g = 0, the newest
   token's state after), cross-entropy on bins (equal widths up to 1,024 tokens, else log).
5. ``mean`` / ``median``: progress tables on the training samples.

Every network: AdamW, minibatches, at most ``max_epochs`` epochs, early stopping when the
validation metric (MAE in tokens; cross-entropy for the classifier) has not improved for
``patience`` epochs, the best epoch's weights kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tandem.errors import ConfigError
from tandem.predict.baselines import ProgressTable
from tandem.predict.checkpoint import PredictorBundle
from tandem.predict.dataset import LengthSamples
from tandem.predict.heads import BinClassifier, ClassifierConfig, HeadConfig, RegressionHead
from tandem.predict.split import split_requests
from tandem.predict.trail import bin_index, choose_edges

Log = Callable[[str], None]
# (name, target, also reads tokens generated): "ares" is the paper's head.
HEADS = (("ares", "linear", False), ("ares_log", "log", False), ("ares_progress", "linear", True))


@dataclass(frozen=True)
class TrainSpec:
    """Training settings; the defaults follow ARES (widths, L1, 100 epochs, patience 10)."""

    widths: tuple[int, ...] = (2048, 512, 64)
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_epochs: int = 100
    patience: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    trail_bins: int = 10
    trail_spacing: str = "auto"
    trail_hidden: int = 512

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ConfigError("max_epochs, patience and batch_size must be >= 1")
        if not self.widths or min(self.widths) < 1 or self.trail_bins < 2:
            raise ConfigError("widths must be positive and trail_bins >= 2")
        if self.trail_spacing not in ("auto", "linear", "log"):
            raise ConfigError(
                f"trail spacing must be auto, linear or log, not {self.trail_spacing!r}"
            )


@dataclass(frozen=True)
class _Fit:
    val_metric: float
    best_epoch: int
    epochs_run: int


def _train_loop(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    val_metric: Callable[[], float],
    spec: TrainSpec,
    seed: int,
) -> _Fit:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay
    )
    best, best_epoch, best_state = float("inf"), -1, copy.deepcopy(model.state_dict())
    epoch = 0
    for epoch in range(spec.max_epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], spec.batch_size):
            rows = order[start : start + spec.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(x[rows]), y[rows])
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            metric = val_metric()
        if metric < best:
            best, best_epoch, best_state = metric, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= spec.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return _Fit(best, best_epoch, epoch + 1)


def train_head(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: HeadConfig,
    spec: TrainSpec,
    seed: int,
) -> tuple[RegressionHead, _Fit]:
    """Fit a regression head on (states, tokens generated, remaining) with L1 in its target
    space; early-stop on validation MAE in tokens."""
    torch.manual_seed(seed)
    head = RegressionHead(config)

    def tensors(part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[torch.Tensor, ...]:
        hidden, generated, remaining = (torch.from_numpy(np.asarray(a)).float() for a in part)
        return head.features(hidden, generated), remaining

    xt, yt = tensors(train)
    xv, yv = tensors(val)
    head.set_input_stats(xt)
    target = head.encode_target(yt)

    def val_mae() -> float:
        return float((head.decode_output(head(xv)) - yv).abs().mean())

    fit = _train_loop(head, xt, target, nn.functional.l1_loss, val_mae, spec, seed)
    return head, fit


def train_classifier(
    x: np.ndarray,
    bins: np.ndarray,
    x_val: np.ndarray,
    bins_val: np.ndarray,
    config: ClassifierConfig,
    spec: TrainSpec,
    seed: int,
) -> tuple[BinClassifier, _Fit]:
    """Fit the TRAIL bin classifier with cross-entropy; early-stop on validation cross-entropy."""
    torch.manual_seed(seed)
    model = BinClassifier(config)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(bins).long()
    xv, yv = torch.from_numpy(x_val).float(), torch.from_numpy(bins_val).long()
    model.set_input_stats(xt)

    def val_ce() -> float:
        return float(nn.functional.cross_entropy(model(xv), yv))

    fit = _train_loop(model, xt, yt, nn.functional.cross_entropy, val_ce, spec, seed)
    return model, fit


def trail_inputs(samples: LengthSamples) -> np.ndarray:
    """TRAIL's input per sample: prompt-mean middle-layer state at g = 0, newest token's after."""
    x = samples["sample_hidden_mid"].copy()
    first = samples["sample_tokens_generated"] == 0
    x[first] = samples["request_prompt_mean_mid"][samples.request_index()[first]]
    return x


def train_bundle(
    samples: LengthSamples, spec: TrainSpec, log: Log | None = None
) -> PredictorBundle:
    """Train every predictor (see the module docstring) and return them as one bundle."""
    say = log or (lambda _msg: None)
    split = split_requests(samples["request_id"], spec.seed, spec.fractions)
    rid, g = samples["sample_request_id"], samples["sample_tokens_generated"]
    remaining = samples["sample_remaining_tokens"].astype(np.float32)
    tr, va = split.mask(rid, "train"), split.mask(rid, "val")
    d = samples.identity.hidden_size
    x = samples["sample_hidden"]
    heads, log_entries, val_mae = {}, {}, {}
    scale = float(remaining[tr].mean())
    for name, target, with_progress in HEADS:
        config = HeadConfig(d, spec.widths, target, scale, with_progress)
        heads[name], fit = train_head(
            (x[tr], g[tr], remaining[tr]), (x[va], g[va], remaining[va]), config, spec, spec.seed
        )
        log_entries[name], val_mae[name] = fit.__dict__, fit.val_metric
        say(
            f"train: {name} val MAE {fit.val_metric:.1f} "
            f"(best epoch {fit.best_epoch}, ran {fit.epochs_run})"
        )
    req_tr = split.mask(samples["request_id"], "train")
    req_va = split.mask(samples["request_id"], "val")
    total = samples["request_output_tokens"].astype(np.float32)
    prompt_x = samples["request_prompt_hidden"]
    config = HeadConfig(d, spec.widths, "linear", float(total[req_tr].mean()))
    zeros = np.zeros(total.shape, dtype=np.float32)
    heads["prompt_only"], fit = train_head(
        (prompt_x[req_tr], zeros[req_tr], total[req_tr]),
        (prompt_x[req_va], zeros[req_va], total[req_va]),
        config,
        spec,
        spec.seed,
    )
    log_entries["prompt_only"], val_mae["prompt_only"] = fit.__dict__, fit.val_metric
    say(f"train: prompt_only val MAE at g=0 {fit.val_metric:.1f} (ran {fit.epochs_run} epochs)")
    edges = choose_edges(int(remaining.max()), spec.trail_bins, spec.trail_spacing)
    xt, bins = trail_inputs(samples), bin_index(remaining, edges)
    trail, fit = train_classifier(
        xt[tr],
        bins[tr],
        xt[va],
        bins[va],
        ClassifierConfig(d, spec.trail_hidden, edges.size - 1),
        spec,
        spec.seed,
    )
    log_entries["trail"] = fit.__dict__
    say(f"train: trail val cross-entropy {fit.val_metric:.3f} (ran {fit.epochs_run} epochs)")
    tables = {
        stat: ProgressTable.fit(g[tr], remaining[tr], samples.every_tokens, stat)
        for stat in ("mean", "median")
    }
    return PredictorBundle(
        identity=samples.identity,
        layer=samples.layer,
        mid_layer=samples.mid_layer,
        every_tokens=samples.every_tokens,
        split_seed=spec.seed,
        split_fractions=spec.fractions,
        heads=heads,
        trail=trail,
        trail_edges=edges,
        tables=tables,
        val_mae=val_mae,
        train_log={
            "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.__dict__.items()},
            "fits": log_entries,
        },
    )
