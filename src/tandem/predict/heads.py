"""The predictor networks (torch): the ARES regression head and the TRAIL bin classifier.

Both standardise their input with the training set's mean and standard deviation (stored as
buffers, so a checkpoint carries them). ``RegressionHead`` outputs remaining tokens directly:
for target ``"linear"`` it learns remaining / ``scale`` (L1 is scale-equivariant, the scale only
conditions the optimisation); for ``"log"`` it learns log(1 + remaining).

ARES feeds the hidden state alone. ``with_progress`` (an extension, off for ``ares``) appends
log(1 + tokens generated so far), which every serving system knows for free: on a model whose
states say little about position, this is what lets the head use the progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tandem.errors import ConfigError

TARGETS = ("linear", "log")


@dataclass(frozen=True)
class HeadConfig:
    """Shape and target of a regression head; ARES's is d -> 2048 -> 512 -> 64 -> 1."""

    input_size: int
    widths: tuple[int, ...] = (2048, 512, 64)
    target: str = "linear"
    scale: float = 1.0
    with_progress: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.input_size < 1 or any(w < 1 for w in self.widths) or self.scale <= 0:
            raise ConfigError(f"invalid head config {self}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        return cls(
            int(data["input_size"]),
            tuple(int(w) for w in data["widths"]),
            str(data["target"]),
            float(data["scale"]),
            bool(data.get("with_progress", False)),
        )


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Standardised(nn.Module):
    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(input_size))
        self.register_buffer("input_std", torch.ones(input_size))

    def set_input_stats(self, x: torch.Tensor) -> None:
        """Fit the standardisation on training inputs [N, d]."""
        self.input_mean.copy_(x.mean(dim=0))
        self.input_std.copy_(x.std(dim=0).clamp(min=1e-6))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std


class RegressionHead(_Standardised):
    """Features [B, f] -> model output [B] (``forward``); states -> remaining (``predict``)."""

    def __init__(self, config: HeadConfig) -> None:
        num_features = config.input_size + int(config.with_progress)
        super().__init__(num_features)
        self.config = config
        self.net = _mlp([num_features, *config.widths, 1])

    def features(
        self, hidden: torch.Tensor, tokens_generated: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network's input: the states, plus log(1 + g) if the head uses progress."""
        if not self.config.with_progress:
            return hidden
        if tokens_generated is None:
            raise ConfigError("this head also reads tokens generated so far; pass them")
        progress = torch.log1p(tokens_generated.to(hidden.dtype).reshape(-1, 1))
        return torch.cat([hidden, progress], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardise(x)).squeeze(-1)

    def encode_target(self, remaining: torch.Tensor) -> torch.Tensor:
        """Remaining tokens -> the space the network regresses in."""
        if self.config.target == "log":
            return torch.log1p(remaining)
        return remaining / self.config.scale

    def decode_output(self, output: torch.Tensor) -> torch.Tensor:
        """Network output -> remaining tokens (>= 0)."""
        if self.config.target == "log":
            return torch.expm1(output).clamp(min=0.0)
        return (output * self.config.scale).clamp(min=0.0)

    def predict(
        self, hidden: torch.Tensor, tokens_generated: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Remaining tokens [B] from states [B, d] (and tokens generated, if used)."""
        return self.decode_output(self.forward(self.features(hidden, tokens_generated)))


@dataclass(frozen=True)
class ClassifierConfig:
    """TRAIL's classifier: d -> hidden -> num_bins."""

    input_size: int
    hidden: int = 512
    num_bins: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        return cls(int(data["input_size"]), int(data["hidden"]), int(data["num_bins"]))


class BinClassifier(_Standardised):
    """Hidden state [B, d] -> bin logits [B, K]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config.input_size)
        self.config = config
        self.net = _mlp([config.input_size, config.hidden, config.num_bins])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardise(x))


def count_params(module: nn.Module) -> int:
    """Trainable parameters (standardisation buffers not counted)."""
    return sum(p.numel() for p in module.parameters())
