"""Decode worker: continuous batching under a KV capacity in tokens.

Life of a request here (the twin of ``sim.decode.DecodeInstance``):

1. ``DecodeTask`` arrives (the placement policy chose this worker); it waits in FIFO order
   for memory. Its KV is still at the prefill side (in Ray's object store).
2. Before each step, ``control.admission.can_admit`` decides whether the head of the queue
   joins (its KV plus one step of growth of the batch must fit; the same rule as the
   simulator's). Joining fetches the hand-off and attaches it to the runner; a request
   preempted earlier instead has its KV recomputed from its tokens.
3. Every step adds one token to every running request.
4. When the next step would not fit, ``control.admission.num_to_preempt`` says how many of the
   newest requests are dropped: their KV is freed and they wait again, first in line, to be
   recomputed (an out-of-memory preemption; the client only sees a pause).
5. After its last token (EOS, ``max_tokens``) the request leaves and frees its KV.

Live migration (``serve.migration`` drives it; ``MigrationTask`` stages): as a destination the
worker reserves KV for an incoming request (counted as reserved by the admission and
preemption rules, freed after ``migration_timeout_s`` if the last stage never comes), keeps
its first copy, then attaches it with the rest; as a source it copies a running request's KV
while it keeps decoding, then detaches it with the KV generated since. A request waiting here
is handed back whole instead (a re-placement).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from tandem.control.admission import (
    admission_hold_until,
    can_admit,
    fits_predicted,
    num_to_preempt,
)
from tandem.serve.messages import (
    DecodeTask,
    KVHandoff,
    KVPart,
    MigrationEvent,
    MigrationTask,
    StepEvent,
    WorkerStats,
)
from tandem.serve.prediction import LivePredictor
from tandem.serve.transfer import (
    join_parts,
    receive,
    receive_part,
    ship,
    to_handoff,
    to_part,
    to_snapshot,
)
from tandem.serve.worker import Event, Worker, error_event

_EMA_WEIGHT = 0.2


@dataclass(slots=True)
class _Waiting:
    request_id: str
    kv_tokens: int
    #: What ``receive`` takes (a fresh hand-off), or the hand-off itself without KV (preempted).
    handoff: Any
    recompute: bool = False
    generated: int = 1
    #: When it started waiting here (``time.monotonic``): placed here, or preempted here.
    since_s: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Running:
    """A request in the runner's batch."""

    seq_id: int
    prompt_tokens: int
    #: KV tokens it holds: prompt plus tokens generated so far.
    num_tokens: int

    @property
    def generated(self) -> int:
        return self.num_tokens - self.prompt_tokens


@dataclass(slots=True)
class _Reservation:
    """KV held here for a migration on its way in."""

    request_id: str
    kv_tokens: int
    deadline_s: float
    limits: tuple[int, bool]
    first: KVPart | None = None


class DecodeWorker(Worker):
    """See the module docstring."""

    def _on_loaded(self) -> None:
        self._waiting: deque[_Waiting] = deque()
        self._request_by_seq: dict[int, str] = {}
        # Running requests in the order they joined (the last is the newest).
        self._running: OrderedDict[str, _Running] = OrderedDict()
        self._num_preemptions = 0
        self._generated_total = 0
        self._transfer_bytes_total = 0
        self._transfer_s_total = 0.0
        self._transfer_rate = 0.0
        self._kv_bytes_per_token = self.kv_bytes_per_token()
        # Per request: (max new tokens, ignore_eos), what predictions need.
        self._limits: dict[str, tuple[int, bool]] = {}
        self._reservations: dict[int, _Reservation] = {}
        self._released: set[int] = set()  # migrations released or expired here
        if self.config.admission not in ("greedy", "predictive"):
            raise ValueError(f"unknown admission '{self.config.admission}'")

    def _tap_layers(self) -> tuple[int, ...] | None:
        # The predictor is built first: a hidden-state head decides which layer the runner taps.
        self._predictor = LivePredictor(
            self.config.prediction,
            refresh_tokens=self.config.prediction_refresh_tokens,
            identity=self.loaded.identity,
        )
        return self._predictor.tap_layers

    @property
    def kv_used_tokens(self) -> int:
        return sum(r.num_tokens for r in self._running.values())

    @property
    def kv_reserved_tokens(self) -> int:
        return sum(r.kv_tokens for r in self._reservations.values())

    def _leave(self, request_id: str) -> _Running:
        """Take a request out of the running batch's bookkeeping (not out of the runner)."""
        running = self._running.pop(request_id)
        del self._request_by_seq[running.seq_id]
        return running

    def _accept(self, task: Any) -> list[Event] | None:
        if isinstance(task, MigrationTask):
            return self._migration(task)
        if not isinstance(task, DecodeTask):
            raise TypeError(f"a decode worker takes DecodeTask, not {type(task).__name__}")
        if task.kv_tokens + 1 > self.config.kv_capacity_tokens:
            raise ValueError(
                f"request needs {task.kv_tokens} KV tokens; this worker holds "
                f"{self.config.kv_capacity_tokens}"
            )
        handoff = task.handoff
        if isinstance(handoff, KVHandoff) and not handoff.keys:
            # Re-placed after a preemption elsewhere: its KV is recomputed here.
            generated = len(handoff.output_token_ids)
            waiting = _Waiting(task.request_id, task.kv_tokens, handoff, True, generated)
        else:
            waiting = _Waiting(task.request_id, task.kv_tokens, handoff)
        self._waiting.append(waiting)
        self._limits[task.request_id] = (task.max_new_tokens, task.ignore_eos)
        return None

    def _abort(self, request_id: str) -> bool:
        self._limits.pop(request_id, None)
        self._predictor.forget(request_id)
        reserved = [m for m, r in self._reservations.items() if r.request_id == request_id]
        for migration_id in reserved:
            del self._reservations[migration_id]
            self._released.add(migration_id)
        for waiting in self._waiting:
            if waiting.request_id == request_id:
                self._waiting.remove(waiting)
                return True
        if request_id not in self._running:
            return bool(reserved)
        self.runner.abort(self._leave(request_id).seq_id)
        return True

    def _has_work(self) -> bool:
        if self.runner is None:
            return False
        return bool(self._running) or (bool(self._waiting) and self._head_fits())

    def _head_fits(self) -> bool:
        head = self._waiting[0]
        fits = can_admit(
            head.kv_tokens,
            kv_capacity_tokens=self.config.kv_capacity_tokens,
            kv_used_tokens=self.kv_used_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens,
            num_running=len(self._running),
            num_joining=len(self._reservations),
            max_batch_size=self.config.max_batch_size,
        )
        if not fits or self.config.admission != "predictive" or not self._predictor.enabled:
            return fits
        if not self._running:
            return True  # an idle worker always admits, so nothing waits forever
        if time.monotonic() >= admission_hold_until(head.since_s, self.config.admission_max_wait_s):
            return True  # predictions held it back long enough: the greedy rule decides
        # Predictive admission: the batch's projected KV peak with the head must fit. A request
        # without a prediction is assumed to run to its max_tokens (the safe side).
        batch = [
            (float(r.num_tokens), self._remaining_or_max(request_id, r.generated))
            for request_id, r in self._running.items()
        ]
        candidate = (float(head.kv_tokens), self._remaining_or_max(head.request_id, head.generated))
        return fits_predicted(
            batch,
            candidate,
            other_reserved_tokens=float(self.kv_reserved_tokens),
            kv_capacity_tokens=self.config.kv_capacity_tokens,
        )

    def _remaining(self, request_id: str, generated: int) -> float | None:
        limit, ignore_eos = self._limits.get(request_id, (0, False))
        return self._predictor.remaining(request_id, generated, limit, ignore_eos)

    def _remaining_or_max(self, request_id: str, generated: int) -> float:
        predicted = self._remaining(request_id, generated)
        if predicted is not None:
            return predicted
        return float(max(0, self._limits.get(request_id, (0, False))[0] - generated))

    # -- one step ---------------------------------------------------------------------------

    def _step(self) -> list[Event]:
        self._preempt_if_needed()
        events: list[Event] = []
        while self._waiting and self._head_fits():
            waiting = self._waiting.popleft()
            try:
                self._join(waiting)
            except Exception as exc:  # a hand-off that cannot be fetched fails its request only
                events.append(error_event([waiting.request_id], f"KV hand-off failed: {exc}"))
        if not self._running:
            return events
        out = self.runner.step()
        if out is None:
            return events
        request_ids = tuple(self._request_by_seq[s] for s in out.seq_ids)
        self._predictor.observe(request_ids, out)
        for request_id, reason in zip(request_ids, out.finish_reasons, strict=True):
            if reason is None:
                self._running[request_id].num_tokens += 1
            else:
                output = self._leave(request_id).generated + 1  # the last token holds no KV
                self._predictor.finished(output, natural=reason == "eos")
                self._predictor.forget(request_id)
                self._limits.pop(request_id, None)
        self.runner.collect_finished()
        self._generated_total += len(request_ids)
        events.append(StepEvent("decode", request_ids, out.token_ids, out.finish_reasons))
        return events

    def _preempt_if_needed(self) -> None:
        newest_first = [r.num_tokens for r in reversed(self._running.values())]
        count = num_to_preempt(
            newest_first,
            kv_capacity_tokens=self.config.kv_capacity_tokens,
            kv_used_tokens=self.kv_used_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens,
        )
        for _ in range(min(count, len(newest_first) - 1)):  # never the last one: it fits alone
            request_id = next(reversed(self._running))
            running = self._leave(request_id)
            snapshot = self.runner.detach(running.seq_id)
            handoff = to_handoff(request_id, snapshot, keep_kv=False)
            generated = len(handoff.output_token_ids)
            self._waiting.appendleft(
                _Waiting(
                    request_id, running.num_tokens, handoff, recompute=True, generated=generated
                )
            )
            self._num_preemptions += 1

    def _join(self, waiting: _Waiting) -> None:
        if waiting.recompute:
            handoff: KVHandoff = waiting.handoff
            tokens = handoff.prompt_token_ids + handoff.output_token_ids
            snapshot = to_snapshot(handoff, self.runner.recompute_kv(tokens[:-1]))
        else:
            start = time.perf_counter()
            handoff = receive(waiting.handoff, self.config.transport)
            snapshot = to_snapshot(handoff)
            self._record_transfer(handoff.kv_bytes, time.perf_counter() - start)
        seq_id = self.runner.attach(snapshot)
        self._request_by_seq[seq_id] = waiting.request_id
        self._running[waiting.request_id] = _Running(
            seq_id, len(handoff.prompt_token_ids), handoff.num_tokens
        )

    # -- live migration ----------------------------------------------------------------------

    def _migration(self, task: MigrationTask) -> list[Event]:
        if task.migration_id in self._released:
            return []  # released (or expired) before this stage arrived
        handler = {
            "reserve": self._reserve,
            "stage": self._stage,
            "commit": self._commit,
            "release": self._release,
            "copy": self._copy_out,
            "detach": self._detach_out,
        }.get(task.stage)
        if handler is None:
            raise ValueError(f"unknown migration stage '{task.stage}'")
        return handler(task)

    def _answer(self, task: MigrationTask, outcome: str, **fields: Any) -> list[Event]:
        return [MigrationEvent(task.request_id, task.migration_id, outcome, **fields)]

    def _reserve(self, task: MigrationTask) -> list[Event]:
        fits = can_admit(
            task.kv_tokens,
            kv_capacity_tokens=self.config.kv_capacity_tokens,
            kv_used_tokens=self.kv_used_tokens,
            kv_reserved_tokens=self.kv_reserved_tokens + sum(w.kv_tokens for w in self._waiting),
            num_running=len(self._running),
            num_joining=len(self._reservations) + len(self._waiting),
            max_batch_size=self.config.max_batch_size,
        )
        if not fits:
            return self._answer(task, "refused", detail="no room for its KV")
        deadline = time.monotonic() + self.config.migration_timeout_s
        self._reservations[task.migration_id] = _Reservation(
            task.request_id, task.kv_tokens, deadline, (task.max_new_tokens, task.ignore_eos)
        )
        return self._answer(task, "reserved")

    def _stage(self, task: MigrationTask) -> list[Event]:
        reservation = self._reservations.get(task.migration_id)
        if reservation is None:
            return self._answer(task, "failed", detail="no reservation here")
        reservation.first = receive_part(task.box, self.config.transport)
        return self._answer(task, "received", kv_tokens=reservation.first.num_tokens)

    def _commit(self, task: MigrationTask) -> list[Event]:
        reservation = self._reservations.pop(task.migration_id, None)
        if reservation is None:
            return self._answer(task, "failed", detail="no reservation here")
        try:
            start = time.perf_counter()
            handoff = receive(task.box, self.config.transport)
            if reservation.first is not None:
                handoff = join_parts(reservation.first, handoff)
            seq_id = self.runner.attach(to_snapshot(handoff))
            self._record_transfer(handoff.kv_bytes, time.perf_counter() - start)
        except Exception as exc:  # the request goes on elsewhere; this worker carries on
            return self._answer(task, "failed", detail=f"{type(exc).__name__}: {exc}")
        self._request_by_seq[seq_id] = task.request_id
        self._running[task.request_id] = _Running(
            seq_id, len(handoff.prompt_token_ids), handoff.num_tokens
        )
        self._limits[task.request_id] = reservation.limits
        return self._answer(task, "committed", kv_tokens=handoff.num_tokens)

    def _release(self, task: MigrationTask) -> list[Event]:
        self._reservations.pop(task.migration_id, None)
        self._released.add(task.migration_id)
        return []

    def _copy_out(self, task: MigrationTask) -> list[Event]:
        running = self._running.get(task.request_id)
        if running is not None:
            part = to_part(self.runner.export_kv(running.seq_id))
            box = ship(part, self.config.transport)
            return self._answer(
                task, "staged", box=box, kv_tokens=part.num_tokens, num_bytes=part.kv_bytes
            )
        for waiting in self._waiting:
            if waiting.request_id == task.request_id:  # not started here: a re-placement
                self._waiting.remove(waiting)
                self._forget_request(task.request_id)
                return self._answer(
                    task,
                    "replaced",
                    box=waiting.handoff,
                    kv_tokens=waiting.kv_tokens,
                    generated=waiting.generated,
                )
        return self._answer(task, "gone", detail="not here (finished or cancelled)")

    def _detach_out(self, task: MigrationTask) -> list[Event]:
        if task.request_id not in self._running:
            return self._answer(task, "gone", detail="no longer running here")
        running = self._leave(task.request_id)
        snapshot = self.runner.detach(running.seq_id, kv_from=task.from_token)
        handoff = to_handoff(task.request_id, snapshot, kv_start=task.from_token)
        self._forget_request(task.request_id)
        return self._answer(
            task,
            "detached",
            box=ship(handoff, self.config.transport),
            kv_tokens=handoff.num_tokens,
            num_bytes=handoff.kv_bytes,
        )

    def _forget_request(self, request_id: str) -> None:
        self._limits.pop(request_id, None)
        self._predictor.forget(request_id)

    def _tick(self) -> list[Event]:
        now = time.monotonic()
        expired = [m for m, r in self._reservations.items() if r.deadline_s <= now]
        events: list[Event] = []
        for migration_id in expired:
            reservation = self._reservations.pop(migration_id)
            self._released.add(migration_id)
            events.append(
                MigrationEvent(
                    reservation.request_id,
                    migration_id,
                    "expired",
                    detail=f"no last stage within {self.config.migration_timeout_s:g} s",
                )
            )
        return events

    def _wake_in_s(self) -> float | None:
        if not self._reservations:
            return None
        return max(0.0, min(r.deadline_s for r in self._reservations.values()) - time.monotonic())

    def _record_transfer(self, num_bytes: int, seconds: float) -> None:
        self._transfer_bytes_total += num_bytes
        self._transfer_s_total += seconds
        if seconds > 0:
            w = _EMA_WEIGHT if self._transfer_rate else 1.0
            self._transfer_rate = (1 - w) * self._transfer_rate + w * num_bytes / seconds

    def _fail_all(self) -> list[str]:
        failed = [w.request_id for w in self._waiting] + list(self._running)
        for seq_id in list(self._request_by_seq):
            self.runner.abort(seq_id)
        self._waiting.clear()
        self._request_by_seq.clear()
        self._running.clear()
        self._limits.clear()
        self._released.update(self._reservations)
        self._reservations.clear()
        return failed

    def _make_stats(self) -> WorkerStats:
        return WorkerStats(
            worker_id=self.config.worker_id,
            role=self.config.role,
            num_running=len(self._running),
            num_waiting=len(self._waiting),
            kv_used_tokens=self.kv_used_tokens,
            kv_waiting_tokens=sum(w.kv_tokens for w in self._waiting),
            kv_capacity_tokens=self.config.kv_capacity_tokens,
            kv_bytes_per_token=self._kv_bytes_per_token,
            max_batch_size=self.config.max_batch_size,
            num_preemptions=self._num_preemptions,
            step_time_s=self._step_ema_s,
            kv_transfer_bytes_per_s=self._transfer_rate,
            kv_transfer_bytes_total=self._transfer_bytes_total,
            kv_transfer_seconds_total=self._transfer_s_total,
            generation_tokens_total=self._generated_total,
            num_steps=self._num_steps,
            running=tuple(
                (request_id, r.prompt_tokens, r.generated, self._remaining(request_id, r.generated))
                for request_id, r in self._running.items()
            ),
            waiting=tuple(
                (w.request_id, w.kv_tokens, w.generated, self._remaining(w.request_id, w.generated))
                for w in self._waiting
            ),
            predicting=self._predictor.enabled,
            num_migrating_in=len(self._reservations),
            kv_reserved_tokens=self.kv_reserved_tokens,
        )
