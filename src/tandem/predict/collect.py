"""Data collection: serve prompts with sampling and record labelled hidden states.

1. Every prompt becomes a request in one ``ModelRunner`` (continuous batching; per-request
   seeds derived from ``seed``, so the data do not depend on batch composition).
2. At prefill, the request's g = 0 sample is recorded (last prompt token), with the prompt-mean
   state at the middle layer for TRAIL.
3. At each decode step whose input token is the g-th generated token with g % every == 0, a
   sample is recorded: the tapped states of that newest token.
4. When the request finishes, its output length n is known and each sample is labelled with
   remaining = n - g (the EOS token counts as an output token: it costs a decode step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tandem.engine.loader import LoadedModel
from tandem.engine.runner import ModelRunner, StepOutput
from tandem.engine.sampling import SamplingParams
from tandem.errors import ConfigError
from tandem.predict.dataset import LengthSamples


@dataclass(frozen=True)
class CollectSpec:
    """What to record and how to sample; ``layer``/``mid_layer`` ``None`` = last / middle."""

    every_tokens: int = 20
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    max_batch_size: int = 64
    layer: int | None = None
    mid_layer: int | None = None


@dataclass
class _Record:
    """Samples of one running request, labelled when it finishes."""

    prompt_hidden: np.ndarray | None = None
    prompt_mean_mid: np.ndarray | None = None
    generated: list[int] = field(default_factory=list)
    hidden: list[np.ndarray] = field(default_factory=list)
    hidden_mid: list[np.ndarray] = field(default_factory=list)


def resolve_layers(loaded: LoadedModel, spec: CollectSpec) -> tuple[int, int]:
    """(ARES layer, TRAIL middle layer), defaults last and ``num_layers // 2`` (at least 1)."""
    num_layers = loaded.identity.num_layers
    layer = num_layers if spec.layer is None else spec.layer % (num_layers + 1)
    mid = max(1, num_layers // 2) if spec.mid_layer is None else spec.mid_layer % (num_layers + 1)
    return layer, mid


def collect_samples(
    loaded: LoadedModel,
    prompts: Sequence[Sequence[int]],
    spec: CollectSpec,
    notes: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LengthSamples:
    """Generate every prompt to completion and return the labelled samples."""
    if spec.every_tokens < 1:
        raise ConfigError(f"every must be >= 1 token, got {spec.every_tokens}")
    layer, mid = resolve_layers(loaded, spec)
    runner = ModelRunner(
        loaded, tap_layers=(layer, mid), max_batch_size=spec.max_batch_size, seed=spec.seed
    )
    params = SamplingParams(temperature=spec.temperature, top_p=spec.top_p)
    ids = [runner.add_request(p, params) for p in prompts]
    records = {seq_id: _Record() for seq_id in ids}
    finished: dict[int, Any] = {}
    while runner.has_unfinished():
        out = runner.step()
        if out is not None:
            _record_step(out, records, layer, mid, spec.every_tokens)
        for done in runner.collect_finished():
            finished[done.seq_id] = done
            if progress is not None:
                progress(len(finished), len(ids))
    arrays = _assemble(ids, prompts, records, finished)
    header_notes = {
        "sampling": {"temperature": spec.temperature, "top_p": spec.top_p, "seed": spec.seed},
        "model_path": str(loaded.path),
        **(notes or {}),
    }
    return LengthSamples(loaded.identity, layer, mid, spec.every_tokens, arrays, header_notes)


def _numpy_rows(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def _record_step(
    out: StepOutput, records: dict[int, _Record], layer: int, mid: int, every: int
) -> None:
    hidden, hidden_mid = (
        _numpy_rows(out.hidden_by_layer[layer]),
        _numpy_rows(out.hidden_by_layer[mid]),
    )
    means = _numpy_rows(out.prompt_mean_by_layer[mid]) if out.prompt_mean_by_layer else None
    for row, (seq_id, produced) in enumerate(zip(out.seq_ids, out.num_output_tokens, strict=True)):
        rec = records[seq_id]
        generated_before = produced - 1
        if means is not None:
            rec.prompt_hidden = hidden[row].copy()
            rec.prompt_mean_mid = means[row].copy()
        if generated_before % every == 0:
            rec.generated.append(generated_before)
            rec.hidden.append(hidden[row].copy())
            rec.hidden_mid.append(hidden_mid[row].copy())


def _assemble(
    ids: Sequence[int],
    prompts: Sequence[Sequence[int]],
    records: dict[int, _Record],
    finished: dict[int, Any],
) -> dict[str, np.ndarray]:
    sample_req: list[int] = []
    generated: list[int] = []
    remaining: list[int] = []
    hidden: list[np.ndarray] = []
    hidden_mid: list[np.ndarray] = []
    out_tokens: list[int] = []
    eos: list[bool] = []
    prompt_hidden: list[np.ndarray] = []
    prompt_mean_mid: list[np.ndarray] = []
    for seq_id in ids:
        rec, done = records[seq_id], finished[seq_id]
        total = done.num_output_tokens
        out_tokens.append(total)
        eos.append(done.finish_reason == "eos")
        sample_req.extend([seq_id] * len(rec.generated))
        generated.extend(rec.generated)
        remaining.extend(total - g for g in rec.generated)
        hidden.extend(rec.hidden)
        hidden_mid.extend(rec.hidden_mid)
        if rec.prompt_hidden is None or rec.prompt_mean_mid is None:
            raise RuntimeError(f"request {seq_id} finished without a prefill record")
        prompt_hidden.append(rec.prompt_hidden)
        prompt_mean_mid.append(rec.prompt_mean_mid)
    lengths = [len(p) for p in prompts]
    return {
        "sample_request_id": np.asarray(sample_req, dtype=np.int32),
        "sample_tokens_generated": np.asarray(generated, dtype=np.int32),
        "sample_remaining_tokens": np.asarray(remaining, dtype=np.int32),
        "sample_hidden": np.stack(hidden).astype(np.float32),
        "sample_hidden_mid": np.stack(hidden_mid).astype(np.float32),
        "request_id": np.asarray(ids, dtype=np.int32),
        "request_prompt_tokens": np.asarray(lengths, dtype=np.int32),
        "request_output_tokens": np.asarray(out_tokens, dtype=np.int32),
        "request_finished_eos": np.asarray(eos, dtype=bool),
        "request_prompt_hidden": np.stack(prompt_hidden).astype(np.float32),
        "request_prompt_mean_mid": np.stack(prompt_mean_mid).astype(np.float32),
        "prompt_token_ids_flat": np.asarray([t for p in prompts for t in p], dtype=np.int32),
        "prompt_offsets": np.cumsum([0, *lengths]).astype(np.int64),
    }
