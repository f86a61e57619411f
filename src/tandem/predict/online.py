"""The ARES predictor as the serving side uses it: hidden states in, remaining tokens out.

Built from a checkpoint for one model; ``predict`` takes the runner's tapped states of a batch
of requests (``StepOutput.hidden_by_layer[predictor.layer]``) and returns their predicted
remaining output lengths. Refresh it every ``every_tokens`` tokens per request (ARES refreshes
continuously; the cost per call is in ``overhead``).

Calls go through ``FoldedHead``, the same function with fewer torch operations: the input
standardisation is folded into the first layer and the output scale into the last, leaving one
``addmm`` per layer and in-place ReLUs (on small heads, per-operation dispatch dominates).

``predict_rows`` is the serving loop's call (``serve.prediction``: once per decode step, on the
rows that are due): on CPU it runs the folded layers in numpy, where a small matrix product
costs a few microseconds against torch's tens of dispatch, and returns Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        # numpy copies for CPU serving; the progress input's row of the first layer apart.
        first_np = self.weights[0].cpu().numpy()
        self.with_progress = head.config.with_progress
        hidden_rows = first_np.shape[0] - int(self.with_progress)
        self._np_first = np.ascontiguousarray(first_np[:hidden_rows])
        self._np_progress = first_np[hidden_rows] if self.with_progress else None
        self._np_weights = [w.cpu().numpy() for w in self.weights[1:]]
        self._np_biases = [b.cpu().numpy() for b in self.biases]

    def numpy_rows(self, hidden: np.ndarray, generated: Sequence[int] | None) -> np.ndarray:
        """The same function in numpy on states [n, d] (float32) and tokens generated [n]."""
        x = hidden @ self._np_first
        x += self._np_biases[0]
        if self._np_progress is not None:
            if generated is None:
                raise ConfigError("this head also reads tokens generated so far; pass them")
            progress = np.log1p(np.asarray(generated, dtype=np.float32))
            x += progress[:, None] * self._np_progress
        for weight, bias in zip(self._np_weights, self._np_biases[1:], strict=True):
            np.maximum(x, 0.0, out=x)
            x = x @ weight
            x += bias
        out = x[:, 0]
        if self.log_target:
            out = np.expm1(out)
        return np.maximum(out, 0.0, out=out)

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
    def from_bundle(cls, bundle: PredictorBundle, name: str | None = None) -> LengthPredictor:
        """Head ``name`` of the bundle (default: the one it names for serving)."""
        name = name or bundle.serve_head
        if name not in bundle.heads:
            raise ConfigError(f"checkpoint has no head {name!r}; it has {sorted(bundle.heads)}")
        return cls(bundle.heads[name], bundle.identity, bundle.layer, bundle.every_tokens)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, identity: ModelIdentity, name: str | None = None
    ) -> LengthPredictor:
        """Load for ``identity``; refused if the checkpoint was trained for another model."""
        return cls.from_bundle(load_bundle(path, identity), name)

    @property
    def with_progress(self) -> bool:
        """Whether ``predict`` also needs the tokens generated so far."""
        return self.head.config.with_progress

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

    def predict_rows(
        self, hidden: torch.Tensor, rows: Sequence[int], tokens_generated: Sequence[int]
    ) -> list[float]:
        """Remaining tokens of ``rows`` of the states ``hidden`` [B, hidden_size], which have
        generated ``tokens_generated`` tokens (aligned with ``rows``); see the module
        docstring."""
        if hidden.shape[-1] != self.identity.hidden_size:
            raise ConfigError(
                f"hidden states have size {hidden.shape[-1]}, the predictor expects "
                f"{self.identity.hidden_size} ({self.identity.short()})"
            )
        if hidden.device.type == "cpu" and hidden.dtype == torch.float32:
            states = hidden.detach().numpy()
            rows = list(rows)
            if len(rows) != states.shape[0] or rows != list(range(len(rows))):
                states = states[rows]
            return self._folded.numpy_rows(states, tokens_generated).tolist()
        index = torch.tensor(list(rows), device=hidden.device)
        generated = torch.tensor(list(tokens_generated), dtype=torch.float32)
        out = self.predict(hidden[index], generated if self.with_progress else None)
        return [float(v) for v in out.tolist()]

    def predict_numpy(
        self, hidden: np.ndarray, tokens_generated: np.ndarray | None = None
    ) -> np.ndarray:
        generated = None if tokens_generated is None else torch.from_numpy(tokens_generated)
        return self.predict(torch.from_numpy(np.asarray(hidden, np.float32)), generated).numpy()
