"""Prefill worker: batched prompt forwards, the first token, the KV hand-off.

Life of a request here (the twin of ``sim.prefill``):

1. ``PrefillTask`` arrives; the runner queues it (FCFS).
2. A step prefills as many queued prompts as fit the runner's batch and token budget, in one
   forward, and samples each one's first token (it streams to the client at once).
3. A request that ended with that token (EOS, ``max_tokens=1``) is done. Every other one is
   detached at once, its KV and sampler state shipped as a ``KVHandoff``: the Controller picks
   a decode worker and passes the hand-off on.
"""

from __future__ import annotations

from typing import Any

from tandem.serve.messages import PrefillTask, StepEvent, WorkerStats
from tandem.serve.transfer import ship, to_handoff
from tandem.serve.worker import Worker


class PrefillWorker(Worker):
    """See the module docstring."""

    def _on_loaded(self) -> None:
        self._request_by_seq: dict[int, str] = {}
        self._seq_by_request: dict[str, int] = {}
        self._prompt_tokens_by_seq: dict[int, int] = {}
        self._prompt_tokens_total = 0
        self._generated_total = 0

    def _accept(self, task: Any) -> None:
        if not isinstance(task, PrefillTask):
            raise TypeError(f"a prefill worker takes PrefillTask, not {type(task).__name__}")
        seq_id = self.runner.add_request(task.prompt_token_ids, task.params)
        self._request_by_seq[seq_id] = task.request_id
        self._seq_by_request[task.request_id] = seq_id
        self._prompt_tokens_by_seq[seq_id] = len(task.prompt_token_ids)

    def _abort(self, request_id: str) -> bool:
        seq_id = self._seq_by_request.pop(request_id, None)
        if seq_id is None:
            return False
        self.runner.abort(seq_id)
        self._request_by_seq.pop(seq_id, None)
        self._prompt_tokens_by_seq.pop(seq_id, None)
        return True

    def _has_work(self) -> bool:
        return self.runner is not None and self.runner.num_waiting > 0

    def _step(self) -> list[StepEvent]:
        out = self.runner.step()
        if out is None:
            return []
        self.runner.collect_finished()  # those that ended with their first token
        request_ids: list[str] = []
        handoffs: list[Any] = []
        kv_tokens: list[int] = []
        for seq_id, reason in zip(out.seq_ids, out.finish_reasons, strict=True):
            request_id = self._request_by_seq.pop(seq_id)
            del self._seq_by_request[request_id]
            prompt_tokens = self._prompt_tokens_by_seq.pop(seq_id)
            self._prompt_tokens_total += prompt_tokens
            request_ids.append(request_id)
            kv_tokens.append(prompt_tokens + 1)
            if reason is not None:
                handoffs.append(None)
                continue
            snapshot = self.runner.detach(seq_id)
            handoffs.append(ship(to_handoff(request_id, snapshot), self.config.transport))
        self._generated_total += len(out.seq_ids)
        return [
            StepEvent(
                kind="prefill",
                request_ids=tuple(request_ids),
                token_ids=out.token_ids,
                finish_reasons=out.finish_reasons,
                handoffs=tuple(handoffs),
                kv_tokens=tuple(kv_tokens),
            )
        ]

    def _fail_all(self) -> list[str]:
        failed = list(self._seq_by_request)
        for seq_id in list(self._request_by_seq):
            self.runner.abort(seq_id)
        self._request_by_seq.clear()
        self._seq_by_request.clear()
        self._prompt_tokens_by_seq.clear()
        return failed

    def _make_stats(self) -> WorkerStats:
        return WorkerStats(
            worker_id=self.config.worker_id,
            role=self.config.role,
            num_waiting=len(self._seq_by_request),
            queued_tokens=sum(self._prompt_tokens_by_seq.values()),
            max_batch_size=self.config.max_batch_size,
            step_time_s=self._step_ema_s,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generated_total,
            num_steps=self._num_steps,
        )
