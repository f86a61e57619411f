"""``ModelIdentity``: which serving model a data file or predictor checkpoint belongs to.

A length predictor reads a model's hidden states, so it is only meaningful for the model (and
layer) it was trained on. Data files and checkpoints record the identity; loading one for another
model is refused with a message. No torch import here: data files are read with numpy alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tandem.errors import ConfigError, InputFormatError


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two models' hidden states interchangeable (they are only if all fields match).

    ``fingerprint`` is a sha256 over the config and weight files (see ``loader.fingerprint``);
    ``context_tokens`` is the usable window (prompt + output) the runner enforces.
    """

    name: str
    fingerprint: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    context_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        try:
            return cls(
                name=str(data["name"]),
                fingerprint=str(data["fingerprint"]),
                hidden_size=int(data["hidden_size"]),
                num_layers=int(data["num_layers"]),
                vocab_size=int(data["vocab_size"]),
                context_tokens=int(data["context_tokens"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed model identity {data!r}: {exc}") from exc

    def short(self) -> str:
        """One-line description for messages."""
        return (
            f"{self.name} (d={self.hidden_size}, {self.num_layers} layers, {self.fingerprint[:12]})"
        )


def require_model_of_file(
    expected: ModelIdentity | None, found: ModelIdentity, path: Path, what: str
) -> None:
    """Refuse (``InputFormatError`` on field ``model``) a file recorded for another model."""
    if expected is None:
        return
    try:
        require_same_model(expected, found, f"{what} {path}")
    except ConfigError as exc:
        raise InputFormatError(path, None, "model", str(exc)) from exc


def require_same_model(expected: ModelIdentity, found: ModelIdentity, what: str) -> None:
    """Raise ``ConfigError`` unless ``found`` (recorded in ``what``) is the ``expected`` model."""
    if expected.hidden_size != found.hidden_size:
        raise ConfigError(
            f"{what} was made for hidden size {found.hidden_size} ({found.short()}), "
            f"but the model has hidden size {expected.hidden_size} ({expected.short()})"
        )
    if expected.fingerprint != found.fingerprint:
        raise ConfigError(
            f"{what} was made for model {found.short()}, not for {expected.short()}; "
            "hidden states of different models are not interchangeable"
        )
