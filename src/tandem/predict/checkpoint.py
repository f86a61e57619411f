"""The predictor checkpoint: every trained predictor of one run, tied to one model and split.

One file (``torch.save`` of plain tensors and primitives, loadable with ``weights_only=True``)
holds the ARES heads (raw and log target), the prompt-only head, the TRAIL classifier with its
bin edges, the progress tables, and the split seed, so ``eval`` compares all predictors on the
same test requests. It records the serving model's ``ModelIdentity`` and tapped layers; loading
it for another model or hidden size is refused with a message.

``serve_head`` names the head that live serving runs (``tandem serve --prediction head:CKPT``;
``ares`` unless the checkpoint says otherwise). ``for_serving`` keeps only that head and the
progress tables (no TRAIL classifier): a file small enough to ship, which serving loads but
``tandem predict eval`` cannot evaluate (it needs every predictor).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tandem.engine.identity import ModelIdentity, require_model_of_file
from tandem.errors import ConfigError, InputFormatError, require_file
from tandem.predict.baselines import ProgressTable
from tandem.predict.dataset import LengthSamples
from tandem.predict.heads import (
    BinClassifier,
    ClassifierConfig,
    HeadConfig,
    RegressionHead,
    count_params,
)
from tandem.predict.split import RequestSplit, split_requests

FORMAT = "tandem-length-predictor"
VERSION = 1


@dataclass
class PredictorBundle:
    """Trained predictors plus what they were trained for (see the module docstring)."""

    identity: ModelIdentity
    layer: int
    mid_layer: int
    every_tokens: int
    split_seed: int
    split_fractions: tuple[float, float, float]
    heads: dict[str, RegressionHead]
    trail: BinClassifier | None
    trail_edges: np.ndarray
    tables: dict[str, ProgressTable]
    val_mae: dict[str, float] = field(default_factory=dict)
    train_log: dict[str, Any] = field(default_factory=dict)
    serve_head: str = "ares"

    def __post_init__(self) -> None:
        if self.serve_head not in self.heads:
            raise ConfigError(
                f"serving head {self.serve_head!r} is not among the heads {sorted(self.heads)}"
            )

    def for_serving(self, name: str | None = None) -> PredictorBundle:
        """A copy with only head ``name`` (default: ``serve_head``) and the progress tables,
        which serving reads as its head; the TRAIL classifier and other heads are dropped."""
        name = name or self.serve_head
        if name not in self.heads:
            raise ConfigError(f"checkpoint has no head {name!r}; it has {sorted(self.heads)}")
        return replace(
            self,
            heads={name: self.heads[name]},
            trail=None,
            trail_edges=np.zeros(0, dtype=np.int64),
            serve_head=name,
        )

    def require_full(self) -> None:
        """Refuse a serving-only checkpoint where every predictor is needed."""
        missing = [n for n in ("ares", "prompt_only") if n not in self.heads]
        if self.trail is None or missing:
            raise ConfigError(
                "this is a serving checkpoint (one head, no TRAIL classifier); evaluating "
                "needs the full checkpoint that 'tandem predict train' wrote"
            )

    def split(self, samples: LengthSamples) -> RequestSplit:
        """The request split the predictors were trained with."""
        return split_requests(samples["request_id"], self.split_seed, self.split_fractions)

    def num_params(self) -> dict[str, int]:
        out = {name: count_params(head) for name, head in self.heads.items()}
        if self.trail is not None:
            out["trail"] = count_params(self.trail)
        out.update({name: table.num_params for name, table in self.tables.items()})
        return out

    def describe(self, samples: LengthSamples) -> dict[str, Any]:
        return {
            "model": self.identity.to_dict(),
            "layer": self.layer,
            "every_tokens": self.every_tokens,
            "serve_head": self.serve_head,
            "ares_widths": list(self.heads[self.serve_head].config.widths),
            "num_requests": samples.num_requests,
            "split_seed": self.split_seed,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.identity.to_dict(),
            "layer": self.layer,
            "mid_layer": self.mid_layer,
            "every_tokens": self.every_tokens,
            "split_seed": self.split_seed,
            "split_fractions": list(self.split_fractions),
            "heads": {
                name: {"config": head.config.to_dict(), "state": head.state_dict()}
                for name, head in self.heads.items()
            },
            "trail": None
            if self.trail is None
            else {
                "config": self.trail.config.to_dict(),
                "state": self.trail.state_dict(),
                "edges": [int(e) for e in self.trail_edges],
            },
            "tables": {name: table.to_dict() for name, table in self.tables.items()},
            "val_mae": dict(self.val_mae),
            "train_log": self.train_log,
            "serve_head": self.serve_head,
        }
        torch.save(payload, path)
        return path


def load_bundle(path: str | Path, expected: ModelIdentity | None = None) -> PredictorBundle:
    """Load a checkpoint; refuse it if malformed or made for another model / hidden size."""
    path = require_file(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" on a plain pickle
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        # PyTorch's own message runs to several lines and, for a pickle holding objects,
        # advises loading with weights_only=False (arbitrary code): neither is passed on.
        if "weights only load failed" in str(exc).lower():
            reason = "it holds Python objects other than tensors (Tandem loads tensors only)"
        else:
            reason = f"torch.load cannot read it ({type(exc).__name__})"
        raise InputFormatError(path, None, None, f"not a predictor checkpoint: {reason}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputFormatError(path, None, "format", f"expected a {FORMAT} checkpoint")
    try:
        identity = ModelIdentity.from_dict(payload["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFormatError(path, None, "model", f"unreadable model identity: {exc}") from exc
    require_model_of_file(expected, identity, path, "checkpoint")
    try:
        return _bundle_of(payload, identity)
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        # RuntimeError: a state dict whose tensors do not fit the recorded shapes.
        raise InputFormatError(path, None, None, f"malformed predictor checkpoint: {exc}") from exc


def _bundle_of(payload: dict[str, Any], identity: ModelIdentity) -> PredictorBundle:
    heads = {}
    for name, entry in payload["heads"].items():
        head = RegressionHead(HeadConfig.from_dict(entry["config"]))
        head.load_state_dict(entry["state"])
        heads[name] = head.eval()
    trail = None
    edges = np.zeros(0, dtype=np.int64)
    if payload.get("trail") is not None:
        trail = BinClassifier(ClassifierConfig.from_dict(payload["trail"]["config"]))
        trail.load_state_dict(payload["trail"]["state"])
        trail.eval()
        edges = np.asarray(payload["trail"]["edges"], dtype=np.int64)
    fractions = tuple(float(f) for f in payload["split_fractions"])
    return PredictorBundle(
        identity=identity,
        layer=int(payload["layer"]),
        mid_layer=int(payload["mid_layer"]),
        every_tokens=int(payload["every_tokens"]),
        split_seed=int(payload["split_seed"]),
        split_fractions=(fractions[0], fractions[1], fractions[2]),
        heads=heads,
        trail=trail,
        trail_edges=edges,
        tables={name: ProgressTable.from_dict(t) for name, t in payload["tables"].items()},
        val_mae={k: float(v) for k, v in payload.get("val_mae", {}).items()},
        train_log=dict(payload.get("train_log", {})),
        serve_head=str(payload.get("serve_head", "ares")),
    )
