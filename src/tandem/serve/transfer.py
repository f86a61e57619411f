"""KV hand-off: engine snapshots to numpy messages and back, and how they travel.

- ``to_handoff`` / ``to_snapshot``: a ``SequenceSnapshot`` (torch) <-> a ``KVHandoff`` (numpy).
  numpy, because Ray's object store moves numpy arrays zero-copy and pickles torch tensors
  (measured here: 0.7-1.5 GB/s against 0.2-0.5 GB/s).
- ``ship`` / ``receive``: the ``inline`` transport hands the object itself (one process);
  ``ray`` puts it in the object store at the prefill worker and the decode worker fetches it
  when it has memory for it, actor to actor (the front end only passes the reference on).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from tandem.engine.sequence import SequenceSnapshot
from tandem.errors import ConfigError
from tandem.serve.messages import KVHandoff, KVPart

TRANSPORTS = ("inline", "ray")
FETCH_TIMEOUT_S = 60.0


def to_handoff(
    request_id: str, snapshot: SequenceSnapshot, *, keep_kv: bool = True, kv_start: int = 0
) -> KVHandoff:
    """The snapshot as numpy; ``keep_kv=False`` drops the cache (a preemption: recompute);
    ``kv_start``: the snapshot's cache begins at that token (a migration's last stage)."""
    layers = snapshot.kv_by_layer if keep_kv else ()
    return KVHandoff(
        request_id=request_id,
        model_fingerprint=snapshot.model_fingerprint,
        prompt_token_ids=snapshot.prompt_token_ids,
        output_token_ids=snapshot.output_token_ids,
        params=snapshot.params,
        max_new_tokens=snapshot.max_new_tokens,
        generator_state=snapshot.generator_state.cpu().numpy(),
        keys=tuple(k.cpu().numpy() for k, _ in layers),
        values=tuple(v.cpu().numpy() for _, v in layers),
        kv_start=kv_start if keep_kv else 0,
    )


def to_part(kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> KVPart:
    """Exported KV (``ModelRunner.export_kv``) as numpy."""
    return KVPart(tuple(k.cpu().numpy() for k, _ in kv), tuple(v.cpu().numpy() for _, v in kv))


def join_parts(first: KVPart, rest: KVHandoff) -> KVHandoff:
    """A migration's two stages as one hand-off: ``first`` covers tokens ``[0, n)`` and
    ``rest`` (with ``kv_start == n``) the others, plus tokens and sampler state."""
    if rest.kv_start != first.num_tokens:
        raise ConfigError(
            f"migration of {rest.request_id}: the last stage starts at token {rest.kv_start}, "
            f"the first stage holds {first.num_tokens}"
        )
    return replace(
        rest,
        keys=tuple(np.concatenate(p, axis=1) for p in zip(first.keys, rest.keys, strict=True)),
        values=tuple(
            np.concatenate(p, axis=1) for p in zip(first.values, rest.values, strict=True)
        ),
        kv_start=0,
    )


def to_snapshot(
    handoff: KVHandoff, kv: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
) -> SequenceSnapshot:
    """The hand-off as an engine snapshot (with ``kv`` instead of the carried cache if given)."""
    if kv is None:
        if not handoff.keys:
            raise ConfigError(f"hand-off of {handoff.request_id} carries no KV cache")
        if handoff.kv_start:
            raise ConfigError(f"hand-off of {handoff.request_id} lacks its first stage")
        kv = tuple(
            (torch.from_numpy(np.array(k)), torch.from_numpy(np.array(v)))
            for k, v in zip(handoff.keys, handoff.values, strict=True)
        )
    return SequenceSnapshot(
        model_fingerprint=handoff.model_fingerprint,
        prompt_token_ids=handoff.prompt_token_ids,
        output_token_ids=handoff.output_token_ids,
        params=handoff.params,
        max_new_tokens=handoff.max_new_tokens,
        generator_state=torch.from_numpy(np.array(handoff.generator_state)),
        kv_by_layer=kv,
    )


def ship(handoff: KVHandoff | KVPart, transport: str) -> Any:
    """What a worker reports for another to ``receive`` (or ``receive_part``)."""
    if transport == "ray":
        import ray

        return [ray.put(handoff)]
    return handoff


def _fetch(box: Any, transport: str) -> Any:
    if transport == "ray":
        import ray

        return ray.get(box[0], timeout=FETCH_TIMEOUT_S)
    return box


def receive(box: Any, transport: str) -> KVHandoff:
    """The hand-off itself (fetched from the object store with the ``ray`` transport)."""
    handoff = _fetch(box, transport)
    if not isinstance(handoff, KVHandoff):
        raise ConfigError(f"expected a KV hand-off, got {type(handoff).__name__}")
    return handoff


def receive_part(box: Any, transport: str) -> KVPart:
    """A migration's first stage (fetched as ``receive`` does)."""
    part = _fetch(box, transport)
    if not isinstance(part, KVPart):
        raise ConfigError(f"expected part of a KV cache, got {type(part).__name__}")
    return part
