"""One request inside the runner: its live state, its final result, its portable snapshot.

- ``SequenceState``: mutable, owned by exactly one ``ModelRunner``.
- ``FinishedSequence``: what ``collect_finished`` hands back (prompt, output, why it stopped).
- ``SequenceSnapshot``: everything needed to continue a running sequence in another runner of
  the same model: its tokens, its KV cache without padding, its sampling state. This is the
  unit of KV transfer / migration (the serving layer moves it; the engine only exports and
  imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tandem.engine.sampling import SamplingParams

FINISH_EOS = "eos"
FINISH_LENGTH = "length"


@dataclass(slots=True)
class SequenceState:
    """A request being served: the KV of all tokens but the last sampled one is in the cache."""

    seq_id: int
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    max_new_tokens: int
    eos_token_ids: frozenset[int]
    generator: torch.Generator
    output_token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def last_token_id(self) -> int:
        return self.output_token_ids[-1] if self.output_token_ids else self.prompt_token_ids[-1]

    def append(self, token_id: int) -> str | None:
        """Record a sampled token; return (and keep) the finish reason if it ends the request."""
        self.output_token_ids.append(token_id)
        if not self.params.ignore_eos and token_id in self.eos_token_ids:
            self.finish_reason = FINISH_EOS
        elif len(self.output_token_ids) >= self.max_new_tokens:
            self.finish_reason = FINISH_LENGTH
        return self.finish_reason

    def finished(self) -> FinishedSequence:
        return FinishedSequence(
            seq_id=self.seq_id,
            prompt_token_ids=self.prompt_token_ids,
            output_token_ids=tuple(self.output_token_ids),
            finish_reason=self.finish_reason or FINISH_LENGTH,
        )


@dataclass(frozen=True)
class FinishedSequence:
    """A completed request. ``output_token_ids`` includes the end-of-sequence token if any."""

    seq_id: int
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...]
    finish_reason: str

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)


@dataclass(frozen=True)
class SequenceSnapshot:
    """A running sequence, detached from its runner, ready to be attached to another one.

    ``kv_by_layer[i]`` is (keys, values) of layer i, each [kv_heads, num_tokens - 1, head_dim]:
    every token except the last sampled one, which the next decode step feeds in.
    ``model_fingerprint`` guards against attaching it to a different model.
    """

    model_fingerprint: str
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...]
    params: SamplingParams
    max_new_tokens: int
    generator_state: torch.Tensor
    kv_by_layer: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def kv_bytes(self) -> int:
        """Size of the KV cache in bytes (what a transfer would move)."""
        return sum(
            k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv_by_layer
        )
