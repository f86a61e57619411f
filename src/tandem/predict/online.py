"""The ARES predictor as the serving side uses it: hidden states in, remaining tokens out.

Built from a checkpoint for one model; ``predict`` takes the runner's tapped states of a batch
of requests (``StepOutput.hidden_by_layer[predictor.layer]``) and returns their predicted
remaining output lengths. Refresh it every ``every_tokens`` tokens per request (ARES refreshes
continuously; the cost per call is in ``overhead``).

Calls go through ``FoldedHead``, the same function with fewer torch operations: the input
standardisation is folded into the first layer and the output scale into the last, leaving one
``addmm`` per layer and in-place ReLUs (on small heads, per-operation dispatch dominates).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tandem.engine.identity import ModelIdentity
from tandem.errors import ConfigError
from tandem.predict.checkpoint import PredictorBundle, load_bundle
from tandem.predict.heads import RegressionHead


class FoldedHead:
    """Inference form of a ``RegressionHead`` (see the module docstring); no autograd."""

    def __init__(self, head: RegressionHead) -> None:
        linears = [m for m in head.net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            first = linears[0]
            weights = [first.weight / head.input_std] + [lin.weight for lin in linears[1:]]
            first_bias = first.bias - first.weight @ (head.input_mean / head.input_std)
            biases = [first_bias] + [lin.bias for lin in linears[1:]]
            self.log_target = head.config.target == "log"
            if not self.log_target:
                weights[-1] = weights[-1] * head.config.scale
                biases[-1] = biases[-1] * head.config.scale
            self.weights = [w.t().contiguous().detach() for w in weights]  # [in, out]
            self.biases = [b.detach().clone() for b in biases]

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.addmm(bias, x, weight)
            if i < last:
                x.relu_()
        out = x.squeeze(-1)
        if self.log_target:
            out = torch.expm1(out)
        return out.clamp_(min=0.0)


class LengthPredictor:
    """A trained regression head bound to a model identity and a tapped layer."""

    def __init__(
        self, head: RegressionHead, identity: ModelIdentity, layer: int, every_tokens: int
    ) -> None:
        self.head = head.eval()
        self._folded = FoldedHead(self.head)
        self.identity = identity
        self.layer = layer
        self.every_tokens = every_tokens

    @classmethod
    def from_bundle(cls, bundle: PredictorBundle, name: str = "ares") -> LengthPredictor:
        if name not in bundle.heads:
            raise ConfigError(f"checkpoint has no head {name!r}; it has {sorted(bundle.heads)}")
        return cls(bundle.heads[name], bundle.identity, bundle.layer, bundle.every_tokens)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, identity: ModelIdentity, name: str = "ares"
    ) -> LengthPredictor:
        """Load for ``identity``; refused if the checkpoint was trained for another model."""
        return cls.from_bundle(load_bundle(path, identity), name)

    def to(self, device: torch.device | str) -> LengthPredictor:
        self.head.to(device)
        self._folded = FoldedHead(self.head)
        return self

    def predict(
        self, hidden: torch.Tensor, tokens_generated: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Remaining tokens [B] (float, >= 0) from states [B, hidden_size]; heads trained with
        progress also need ``tokens_generated`` [B]. No autograd context is entered (it costs
        a few microseconds per call): the folded weights are detached, so no graph is built."""
        if hidden.shape[-1] != self.identity.hidden_size:
            raise ConfigError(
                f"hidden states have size {hidden.shape[-1]}, the predictor expects "
                f"{self.identity.hidden_size} ({self.identity.short()})"
            )
        generated = None if tokens_generated is None else tokens_generated.to(hidden.device)
        return self._folded(self.head.features(hidden.float(), generated))

    def predict_numpy(
        self, hidden: np.ndarray, tokens_generated: np.ndarray | None = None
    ) -> np.ndarray:
        generated = None if tokens_generated is None else torch.from_numpy(tokens_generated)
        return self.predict(torch.from_numpy(np.asarray(hidden, np.float32)), generated).numpy()
