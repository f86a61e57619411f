"""Every message between the front end (Controller) and the workers, in one file.

Front end -> worker: ``PrefillTask`` (a prompt to prefill), ``DecodeTask`` (a request whose KV
waits at the prefill side, to be continued here) and aborts (by request id).
Worker -> front end: one ``WorkerUpdate`` per ``poll``: the ``StepEvent``s since the last poll
(one per step, carrying every row that step served) and the worker's ``WorkerStats``.
Prefill -> decode: ``KVHandoff``, the request's tokens, sampler state and KV cache as numpy
arrays (Ray moves numpy through its object store without pickling or copying it).

All are plain frozen dataclasses of numbers, strings, tuples and numpy arrays: what crosses a
process boundary here is produced by Tandem's own workers, never by an HTTP client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tandem.control.admission import DEFAULT_ADMISSION_MAX_WAIT_S
from tandem.engine.sampling import SamplingParams

ROLE_PREFILL = "prefill"
ROLE_DECODE = "decode"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How to build one worker (sent to its process)."""

    worker_id: int
    role: str
    model: str
    device: str = "cpu"
    max_batch_size: int = 64
    max_prefill_tokens: int = 4096
    #: Decode only: KV capacity in tokens (prompt plus generated, summed over requests here).
    kv_capacity_tokens: int = 16384
    seed: int = 0
    #: "inline" (the hand-off object itself) or "ray" (a reference into Ray's object store).
    transport: str = "inline"
    torch_threads: int = 1
    #: CPU cores the worker's process may run on (``None``: wherever the OS puts it).
    cpu_affinity: tuple[int, ...] | None = None
    #: Decode only: remaining-length prediction source (``serve.prediction``), its refresh
    #: period in tokens, and admission ("greedy" or "predictive", ``control.admission``).
    prediction: str = "none"
    prediction_refresh_tokens: int = 20
    admission: str = "greedy"
    #: Decode only: how long predictive admission may hold a request back
    #: (``control.admission.admission_hold_until``).
    admission_max_wait_s: float = DEFAULT_ADMISSION_MAX_WAIT_S
    #: Decode only: a migration's memory reserved here is freed if its last stage has not
    #: arrived this many seconds after the reservation.
    migration_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker says once its model is loaded."""

    worker_id: int
    role: str
    model_name: str
    fingerprint: str
    vocab_size: int
    context_tokens: int
    eos_token_ids: tuple[int, ...]
    kv_bytes_per_token: int
    node: str
    pid: int


@dataclass(frozen=True, slots=True)
class PrefillTask:
    """Prefill ``prompt_token_ids``, sample the first token, hand the KV off."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams


@dataclass(frozen=True, slots=True)
class KVHandoff:
    """A running request detached from a runner: everything needed to continue it elsewhere.

    ``keys[i]`` / ``values[i]`` are layer i's cache, [kv_heads, tokens, head_dim], for every
    token except the last sampled one. Empty tuples mean the KV was dropped (a preempted
    request): the receiver recomputes it from the tokens.
    """

    request_id: str
    model_fingerprint: str
    prompt_token_ids: tuple[int, ...]
    output_token_ids: tuple[int, ...]
    params: SamplingParams
    max_new_tokens: int
    generator_state: np.ndarray
    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    #: The carried cache covers tokens ``kv_start`` onward (a migration's last stage carries
    #: only what its first stage did not).
    kv_start: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def kv_bytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in zip(self.keys, self.values, strict=True))


@dataclass(frozen=True, slots=True)
class KVPart:
    """Part of a running request's KV cache, copied while it keeps decoding (a migration's
    first stage): layer i's keys and values, [kv_heads, tokens, head_dim]."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]

    @property
    def num_tokens(self) -> int:
        return int(self.keys[0].shape[1]) if self.keys else 0

    @property
    def kv_bytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in zip(self.keys, self.values, strict=True))


@dataclass(frozen=True, slots=True)
class DecodeTask:
    """Continue a prefilled request here. ``handoff`` is a ``KVHandoff`` (inline transport) or
    a one-element list holding a Ray reference to one (kept in a list so Ray does not fetch
    it before the worker has memory for it)."""

    request_id: str
    kv_tokens: int
    handoff: Any
    #: What predictions need before the hand-off is fetched.
    max_new_tokens: int = 0
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class MigrationTask:
    """One stage of a live migration (``serve.migration`` has the protocol).

    To the destination: ``reserve`` (hold ``kv_tokens`` for it, or refuse), ``stage`` (keep the
    first copy, ``box``), ``commit`` (``box`` has the rest: attach and decode), ``release``
    (forget it). To the source: ``copy`` (export the KV so far and keep decoding), ``detach``
    (stop, export the KV from ``from_token`` on with the sampler state, free it here).
    """

    request_id: str
    migration_id: int
    stage: str
    kv_tokens: int = 0
    from_token: int = 0
    box: Any = None
    max_new_tokens: int = 0
    ignore_eos: bool = False


@dataclass(frozen=True, slots=True)
class MigrationEvent:
    """A worker's answer to a ``MigrationTask`` (``serve.migration`` lists the outcomes).

    ``box`` carries a hand-off (``staged`` / ``detached``: part of the KV; ``replaced``: the
    waiting request's own hand-off); ``kv_tokens`` is how many KV tokens it covers or needs.
    """

    request_id: str
    migration_id: int
    outcome: str
    box: Any = None
    kv_tokens: int = 0
    num_bytes: int = 0
    generated: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One step of a worker: every row it served, aligned tuples.

    Prefill steps carry ``handoffs`` (aligned with the rows; ``None`` where the request already
    finished with its first token). ``error`` is set for rows that failed (the request ends).
    """

    kind: str  # "prefill" | "decode" | "error"
    request_ids: tuple[str, ...]
    token_ids: tuple[int, ...]
    finish_reasons: tuple[str | None, ...]
    handoffs: tuple[Any, ...] = ()
    kv_tokens: tuple[int, ...] = ()
    error: str | None = None
    time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker's state as of its last step (what the Controller builds its views from)."""

    worker_id: int
    role: str
    #: Tasks received so far (the Controller counts what it sent but the worker has not seen).
    num_tasks_received: int = 0
    num_running: int = 0
    num_waiting: int = 0
    queued_tokens: int = 0
    kv_used_tokens: int = 0
    kv_waiting_tokens: int = 0
    kv_capacity_tokens: int = 0
    #: Decode only: bytes of KV cache per token of this worker's model.
    kv_bytes_per_token: int = 0
    max_batch_size: int = 0
    num_preemptions: int = 0
    #: Recent duration of one step (exponential average), seconds.
    step_time_s: float = 0.0
    #: Measured KV hand-off rate into this worker (fetch and attach), bytes per second.
    kv_transfer_bytes_per_s: float = 0.0
    kv_transfer_bytes_total: int = 0
    kv_transfer_seconds_total: float = 0.0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    num_steps: int = 0
    #: Decode only, per request: (request id, prompt tokens, tokens generated, predicted
    #: remaining or None) of the running batch in join order, and (request id, KV tokens
    #: needed, tokens generated, predicted remaining or None) of the queue.
    running: tuple[tuple[str, int, int, float | None], ...] = ()
    waiting: tuple[tuple[str, int, int, float | None], ...] = ()
    #: Whether a prediction source runs (views then project KV from predictions).
    predicting: bool = False
    #: Decode only: migrations into this worker holding a reservation, and the KV they hold.
    num_migrating_in: int = 0
    kv_reserved_tokens: int = 0


@dataclass(frozen=True, slots=True)
class WorkerUpdate:
    """The answer to one ``poll``: events since the last poll and the stats after them."""

    events: tuple[StepEvent | MigrationEvent, ...]
    stats: WorkerStats
