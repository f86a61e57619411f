"""``ModelRunner``: continuous batching of one causal LM, with a hidden-state tap.

Life of a request in the runner:

1. ``add_request(prompt_token_ids, params)`` validates it (token ids, context window) and queues it.
2. A ``step()`` that finds queued requests and free slots prefills them together (left padding,
   one forward) and samples each one's first token.
3. Other steps decode: one forward over every running row, one new token each.
4. On end-of-sequence or ``max_new_tokens`` the request leaves the batch; ``collect_finished``
   hands it back.
5. Optionally, ``detach`` exports a running request (tokens, KV, sampler state) and ``attach``
   continues it in another runner of the same model.

Every step returns, for each row it served, the tapped layers' hidden state of the token that
row fed in (the last prompt token at prefill, the newest generated token at decode): taken
from the same forward with ``output_hidden_states``, never from an extra pass. Layer ``L`` means
``hidden_states[L]`` of transformers: 0 is the embeddings, ``num_layers`` the final (normed)
state that feeds the LM head. No serving concerns (time, queues across instances, HTTP) here.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tandem.engine.errors import ContextLengthError
from tandem.engine.kv_cache import RunningBatch
from tandem.engine.loader import LoadedModel
from tandem.engine.sampling import SamplingParams, make_generator, sample_tokens
from tandem.engine.sequence import FinishedSequence, SequenceSnapshot, SequenceState
from tandem.errors import ConfigError


@dataclass(frozen=True)
class StepOutput:
    """What one ``step`` did, one entry per served row (all tuples aligned).

    ``hidden_by_layer[L]`` is [rows, hidden_size]: row i's state at the token it fed in, i.e.
    after ``num_output_tokens[i] - 1`` generated tokens. ``prompt_mean_by_layer`` (prefill only)
    is the mean state over each prompt's tokens (TRAIL's prefill input).
    """

    kind: str  # "prefill" or "decode"
    seq_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    num_output_tokens: tuple[int, ...]
    finish_reasons: tuple[str | None, ...]
    hidden_by_layer: Mapping[int, torch.Tensor]
    prompt_mean_by_layer: Mapping[int, torch.Tensor] | None = None


def _cache_of(out: Any) -> Any:
    """The KV cache a forward returned: ``out.cache`` from transformers 5.24 on,
    ``out.past_key_values`` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class ModelRunner:
    """Batched prefill and decode of one model on one device; see the module docstring."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        tap_layers: Sequence[int] | None = None,
        max_batch_size: int = 64,
        max_prefill_tokens: int = 16384,
        seed: int = 0,
    ) -> None:
        if max_batch_size < 1 or max_prefill_tokens < 1:
            raise ConfigError("max_batch_size and max_prefill_tokens must be >= 1")
        self.loaded = loaded
        self.identity = loaded.identity
        num_layers = loaded.identity.num_layers
        layers = tuple(tap_layers) if tap_layers is not None else (num_layers,)
        self.tap_layers = tuple(
            layer % (num_layers + 1) if layer < 0 else layer for layer in layers
        )
        bad = [layer for layer in self.tap_layers if not 0 <= layer <= num_layers]
        if bad:
            raise ConfigError(f"tap layers {bad} out of range 0..{num_layers} (0 = embeddings)")
        self.max_batch_size = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self._seed = seed
        self._device = loaded.device
        # transformers 5.24 renamed the forward's ``past_key_values`` to ``cache`` (the old name
        # warns, and goes in 5.40); earlier versions know only the old one.
        forward = inspect.signature(loaded.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._next_id = 0
        self._waiting: deque[SequenceState] = deque()
        self._running: list[SequenceState] = []
        self._batch: RunningBatch | None = None
        self._finished: list[FinishedSequence] = []

    # -- requests -------------------------------------------------------------------------

    def add_request(
        self, prompt_token_ids: Sequence[int], params: SamplingParams | None = None
    ) -> int:
        """Queue a request; return its id. Raises ``ContextLengthError`` if it cannot fit."""
        params = params or SamplingParams()
        prompt = tuple(int(t) for t in prompt_token_ids)
        vocab = self.identity.vocab_size
        if not prompt:
            raise ConfigError("empty prompt: give at least one token (e.g. BOS)")
        if any(not 0 <= t < vocab for t in prompt):
            raise ConfigError(f"prompt token ids must be in 0..{vocab - 1}")
        context = self.identity.context_tokens
        room = context - len(prompt)
        if room < 1 or (params.max_new_tokens is not None and params.max_new_tokens > room):
            raise ContextLengthError(len(prompt), params.max_new_tokens, context)
        seq_id = self._next_id
        self._next_id += 1
        self._waiting.append(
            self._new_state(seq_id, prompt, (), params, params.max_new_tokens or room)
        )
        return seq_id

    def _new_state(
        self,
        seq_id: int,
        prompt: tuple[int, ...],
        output: tuple[int, ...],
        params: SamplingParams,
        max_new_tokens: int,
    ) -> SequenceState:
        seed = params.seed
        if seed is None:
            seed = int(np.random.SeedSequence([self._seed, seq_id]).generate_state(1)[0])
        return SequenceState(
            seq_id=seq_id,
            prompt_token_ids=prompt,
            params=params,
            max_new_tokens=max_new_tokens,
            eos_token_ids=frozenset(self.loaded.eos_token_ids),
            generator=make_generator(seed, self._device),
            output_token_ids=list(output),
        )

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    def has_unfinished(self) -> bool:
        return bool(self._waiting or self._running)

    def collect_finished(self) -> list[FinishedSequence]:
        """Hand back (and forget) the requests that finished since the last call."""
        done, self._finished = self._finished, []
        return done

    # -- steps ----------------------------------------------------------------------------

    def step(self) -> StepOutput | None:
        """Prefill queued requests if there is room, else decode the running batch one token."""
        if self._waiting and len(self._running) < self.max_batch_size:
            return self._prefill(self._admit())
        if self._running:
            return self._decode()
        return None

    def _admit(self) -> list[SequenceState]:
        free = self.max_batch_size - len(self._running)
        admitted: list[SequenceState] = []
        longest = 0
        while self._waiting and len(admitted) < free:
            length = max(longest, len(self._waiting[0].prompt_token_ids))
            if admitted and length * (len(admitted) + 1) > self.max_prefill_tokens:
                break
            longest = length
            admitted.append(self._waiting.popleft())
        return admitted

    @torch.inference_mode()
    def _prefill(self, seqs: list[SequenceState]) -> StepOutput:
        width = max(len(s.prompt_token_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.loaded.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq.prompt_token_ids) :] = torch.tensor(seq.prompt_token_ids)
            mask[row, width - len(seq.prompt_token_ids) :] = 1
        ids, mask = ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self.loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        weights = (mask.unsqueeze(-1) / mask.sum(dim=1, keepdim=True).unsqueeze(-1)).float()
        hidden = {layer: out.hidden_states[layer][:, -1, :].float() for layer in self.tap_layers}
        means = {
            layer: (out.hidden_states[layer].float() * weights).sum(dim=1)
            for layer in self.tap_layers
        }
        new_batch = RunningBatch([(lay.keys, lay.values) for lay in _cache_of(out).layers], mask)
        self._batch = RunningBatch.merge(self._batch, new_batch)
        self._running.extend(seqs)
        return self._sample_and_retire(out.logits[:, -1, :], seqs, "prefill", hidden, means)

    @torch.inference_mode()
    def _decode(self) -> StepOutput:
        batch = self._batch
        assert batch is not None  # running rows always have a batch
        seqs = list(self._running)
        ids = torch.tensor([[s.last_token_id] for s in seqs], dtype=torch.long, device=self._device)
        positions = torch.tensor([[s.num_tokens - 1] for s in seqs], device=self._device)
        mask = batch.mask_with_new_column()
        out = self.loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            **{self._cache_kwarg: batch.cache},
            use_cache=True,
            output_hidden_states=True,
        )
        batch.commit_decode(mask)
        hidden = {layer: out.hidden_states[layer][:, -1, :].float() for layer in self.tap_layers}
        return self._sample_and_retire(out.logits[:, -1, :], seqs, "decode", hidden, None)

    def _sample_and_retire(
        self,
        logits: torch.Tensor,
        seqs: list[SequenceState],
        kind: str,
        hidden: dict[int, torch.Tensor],
        means: dict[int, torch.Tensor] | None,
    ) -> StepOutput:
        early = [i for i, s in enumerate(seqs) if len(s.output_token_ids) < s.params.min_tokens]
        if early and self.loaded.eos_token_ids:
            logits = logits.clone()
            eos = torch.tensor(self.loaded.eos_token_ids, device=logits.device)
            rows = torch.tensor(early, device=logits.device)
            logits[rows.unsqueeze(-1), eos.unsqueeze(0)] = float("-inf")
        tokens = sample_tokens(logits, [s.params for s in seqs], [s.generator for s in seqs])
        reasons = tuple(seq.append(token) for seq, token in zip(seqs, tokens, strict=True))
        if any(reason is not None for reason in reasons):
            self._finished.extend(s.finished() for s in self._running if s.finish_reason)
            self._keep([i for i, s in enumerate(self._running) if s.finish_reason is None])
        return StepOutput(
            kind=kind,
            seq_ids=tuple(s.seq_id for s in seqs),
            token_ids=tuple(tokens),
            num_output_tokens=tuple(len(s.output_token_ids) for s in seqs),
            finish_reasons=reasons,
            hidden_by_layer=hidden,
            prompt_mean_by_layer=means,
        )

    def _keep(self, rows: list[int]) -> None:
        assert self._batch is not None
        self._batch = self._batch.select(rows)
        self._running = [self._running[i] for i in rows]

    def abort(self, seq_id: int) -> bool:
        """Drop a queued or running request (its KV is freed); False if it is not here."""
        for state in self._waiting:
            if state.seq_id == seq_id:
                self._waiting.remove(state)
                return True
        try:
            row = self._row(seq_id)
        except ConfigError:
            return False
        self._keep([i for i in range(len(self._running)) if i != row])
        return True

    # -- migration --------------------------------------------------------------------------

    def _row(self, seq_id: int) -> int:
        for i, s in enumerate(self._running):
            if s.seq_id == seq_id:
                return i
        raise ConfigError(f"request {seq_id} is not running in this runner")

    def export_kv(
        self, seq_id: int, start: int = 0
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """A copy of a running request's KV from its token ``start`` on, per layer
        ([H, T, D], [H, T, D]); the request keeps running (a migration's first stage)."""
        row = self._row(seq_id)
        assert self._batch is not None
        return tuple(self._batch.row_kv(row, start))

    def detach(self, seq_id: int, kv_from: int = 0) -> SequenceSnapshot:
        """Remove a running request and return everything needed to continue it elsewhere
        (its KV from token ``kv_from`` on: the earlier part may have been copied already)."""
        row = self._row(seq_id)
        assert self._batch is not None
        seq = self._running[row]
        snapshot = SequenceSnapshot(
            model_fingerprint=self.identity.fingerprint,
            prompt_token_ids=seq.prompt_token_ids,
            output_token_ids=tuple(seq.output_token_ids),
            params=seq.params,
            max_new_tokens=seq.max_new_tokens,
            generator_state=seq.generator.get_state(),
            kv_by_layer=tuple(self._batch.row_kv(row, kv_from)),
        )
        self._keep([i for i in range(len(self._running)) if i != row])
        return snapshot

    @torch.inference_mode()
    def recompute_kv(
        self, token_ids: Sequence[int]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """The KV cache of ``token_ids`` (one forward), per layer ([H, T, D], [H, T, D]).

        A request preempted on KV overflow loses its cache; before it rejoins, its KV is
        rebuilt from every token but the last sampled one (which the next decode step feeds in).
        """
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self._device)
        out = self.loaded.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return tuple((lay.keys[0].clone(), lay.values[0].clone()) for lay in _cache_of(out).layers)

    def attach(self, snapshot: SequenceSnapshot) -> int:
        """Continue a detached request here; return its id in this runner."""
        if snapshot.model_fingerprint != self.identity.fingerprint:
            raise ConfigError("snapshot comes from a different model; KV caches are not portable")
        if len(self._running) >= self.max_batch_size:
            raise ConfigError(f"runner is full ({self.max_batch_size} running requests)")
        seq_id = self._next_id
        self._next_id += 1
        seq = self._new_state(
            seq_id,
            snapshot.prompt_token_ids,
            snapshot.output_token_ids,
            snapshot.params,
            snapshot.max_new_tokens,
        )
        seq.generator.set_state(snapshot.generator_state)
        kv = [(k.to(self._device), v.to(self._device)) for k, v in snapshot.kv_by_layer]
        self._batch = RunningBatch.merge(self._batch, RunningBatch.from_rows([kv]))
        self._running.append(seq)
        return seq_id

    # -- convenience ------------------------------------------------------------------------

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams | None = None
    ) -> list[FinishedSequence]:
        """Run ``prompts`` to completion (with anything already queued); results in prompt order."""
        ids = [self.add_request(p, params) for p in prompts]
        done: dict[int, FinishedSequence] = {}
        while self.has_unfinished():
            self.step()
            done.update((f.seq_id, f) for f in self.collect_finished())
        wanted = set(ids)
        self._finished.extend(f for i, f in done.items() if i not in wanted)
        return [done[i] for i in ids]
