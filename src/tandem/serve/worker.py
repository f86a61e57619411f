"""The step loop that both worker roles share: an inbox, a thread that steps, and ``poll``.

Life of a worker:

1. Built from a ``WorkerConfig`` (cheap); ``load()`` loads the model, builds the
   ``ModelRunner`` and starts the step thread; it returns ``WorkerInfo``.
2. The front end calls ``submit(tasks)`` and ``abort(request_ids)`` (thread-safe; they only
   fill the inbox and wake the loop).
3. The loop applies the inbox, then runs one step if the role has work (``_step``), records
   the ``StepEvent`` and the new ``WorkerStats``, and sleeps when there is nothing to do.
4. ``poll(timeout_s)`` blocks until there are events (or the timeout) and hands them back with
   the latest stats: one message per step with every row, never one per token.
5. ``stop()`` ends the loop.

An abort can overtake the task it cancels (Ray does not order calls to a threaded actor), so
an abort of a request never seen is remembered and the task is dropped when it arrives; an
abort of a request this worker already let go (finished, handed off) is ignored, so nothing is
remembered for ever (a later request reusing that id would otherwise be dropped).
A step that raises fails the requests it held (an ``error`` event each), and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tandem.serve.messages import (
    DecodeTask,
    MigrationEvent,
    PrefillTask,
    StepEvent,
    WorkerConfig,
    WorkerInfo,
    WorkerStats,
    WorkerUpdate,
)

Event = StepEvent | MigrationEvent

log = logging.getLogger("tandem.serve")
_EMA_WEIGHT = 0.2  # weight of the newest step in the recent step time


class WorkerStopped(RuntimeError):
    """``poll`` of a worker whose loop has ended (for the front end, the worker is gone)."""


class Worker(ABC):
    """One model runner and its step loop; see the module docstring."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._inbox: list[Any] = []
        self._aborts: list[str] = []
        self._events: list[Event] = []
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._num_received = 0
        # Aborted before their task arrived (dropped when it does), and the ids of tasks taken
        # (an abort of one of those that is no longer here came too late: nothing to forget).
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._taken: OrderedDict[str, None] = OrderedDict()
        self._stats = WorkerStats(worker_id=config.worker_id, role=config.role)
        self._step_ema_s = 0.0
        self._num_steps = 0
        self._last_poll_s = 0.0
        self.runner: Any = None
        self.loaded: Any = None

    # -- called by the front end (any thread) ------------------------------------------------

    def load(self) -> WorkerInfo:
        """Load the model, start the step loop, say who we are."""
        import torch

        from tandem.engine.loader import load_model
        from tandem.engine.runner import ModelRunner

        torch.set_num_threads(self.config.torch_threads)
        if self.config.cpu_affinity:
            # The simulator assumes instances do not share compute: pinned, they do not.
            os.sched_setaffinity(0, self.config.cpu_affinity)
        self.loaded = load_model(self.config.model, device=self.config.device)
        self.runner = ModelRunner(
            self.loaded,
            tap_layers=self._tap_layers(),
            max_batch_size=self.config.max_batch_size,
            max_prefill_tokens=self.config.max_prefill_tokens,
            seed=self.config.seed + 7919 * self.config.worker_id,
        )
        self._on_loaded()
        with self._cond:
            self._stats = self._make_stats()
        self._thread = threading.Thread(
            target=self._loop, name=f"{self.config.role}-{self.config.worker_id}", daemon=True
        )
        self._thread.start()
        identity = self.loaded.identity
        return WorkerInfo(
            worker_id=self.config.worker_id,
            role=self.config.role,
            model_name=identity.name,
            fingerprint=identity.fingerprint,
            vocab_size=identity.vocab_size,
            context_tokens=identity.context_tokens,
            eos_token_ids=tuple(self.loaded.eos_token_ids),
            kv_bytes_per_token=self.kv_bytes_per_token(),
            node=_node_name(),
            pid=os.getpid(),
        )

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache one token takes in this worker's model (K and V, every layer)."""
        config = self.loaded.model.config
        heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        head_dim = int(
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        dtype_bytes = next(self.loaded.model.parameters()).element_size()
        return 2 * self.loaded.identity.num_layers * heads * head_dim * dtype_bytes

    def submit(self, tasks: Sequence[Any]) -> None:
        with self._cond:
            self._inbox.extend(tasks)
            self._num_received += len(tasks)
            self._cond.notify_all()

    def abort(self, request_ids: Sequence[str]) -> None:
        with self._cond:
            self._aborts.extend(request_ids)
            self._cond.notify_all()

    def poll(self, timeout_s: float, linger_s: float = 0.0) -> WorkerUpdate:
        """Events since the last poll (waiting up to ``timeout_s`` for one) and the stats.

        ``linger_s``: answer no sooner than this after the previous answer, so that one answer
        carries several steps. Each answer costs the worker a call's worth of its time (with
        Ray, 1.5-2 ms of a 5 ms step when polled every step), so batching steps per answer
        buys throughput for a little streaming latency.
        """
        with self._cond:
            self._cond.wait_for(lambda: bool(self._events) or self._stopped, timeout=timeout_s)
            wait_s = linger_s - (time.perf_counter() - self._last_poll_s)
            if self._events and wait_s > 0:
                self._cond.wait_for(lambda: self._stopped, timeout=wait_s)
            events, self._events = self._events, []
            self._last_poll_s = time.perf_counter()
            if self._stopped and not events:
                raise WorkerStopped(f"{self.name} has stopped")
            return WorkerUpdate(tuple(events), self._stats)

    def stats(self) -> WorkerStats:
        with self._cond:
            return self._stats

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopped or bool(self._inbox or self._aborts) or self._has_work(),
                    timeout=self._wake_in_s(),
                )
                if self._stopped:
                    return
                tasks, self._inbox = self._inbox, []
                aborts, self._aborts = self._aborts, []
            events = self._apply(tasks, aborts)
            events.extend(self._tick())
            if self._has_work():
                events.extend(self._guarded_step())
            stats = self._make_stats()
            with self._cond:
                self._events.extend(events)
                self._stats = replace(stats, num_tasks_received=self._num_received)
                if events:
                    self._cond.notify_all()

    def _apply(self, tasks: list[Any], aborts: list[str]) -> list[Event]:
        events: list[Event] = []
        for request_id in aborts:
            if not self._abort(request_id) and request_id not in self._taken:
                _remember(self._forgotten, request_id)
        for task in tasks:
            if task.request_id in self._forgotten:
                del self._forgotten[task.request_id]
                continue
            _remember(self._taken, task.request_id)
            if isinstance(task, PrefillTask | DecodeTask) and self._abort(task.request_id):
                # A worker holds one copy of a request: a stale task delivered after this
                # worker restarted, before the request resumed here, gives way to the new one.
                log.warning("%s: request %s replaced by a newer task", self.name, task.request_id)
            try:
                events.extend(self._accept(task) or ())
            except Exception as exc:  # a task this worker cannot take fails alone
                log.warning("request %s refused by %s: %s", task.request_id, self.name, exc)
                events.append(error_event([task.request_id], f"{type(exc).__name__}: {exc}"))
        return events

    def _guarded_step(self) -> list[Event]:
        start = time.perf_counter()
        try:
            events = self._step()
        except Exception as exc:
            log.exception("%s: step failed; failing its requests", self.name)
            return [error_event(self._fail_all(), f"worker step failed: {exc}")]
        elapsed = time.perf_counter() - start
        self._num_steps += 1
        w = _EMA_WEIGHT if self._step_ema_s else 1.0
        self._step_ema_s = (1 - w) * self._step_ema_s + w * elapsed
        return list(events)

    @property
    def name(self) -> str:
        return f"{self.config.role}-{self.config.worker_id}"

    # -- what each role defines -------------------------------------------------------------

    def _tap_layers(self) -> tuple[int, ...] | None:
        """Layers whose hidden states the runner's steps return (None: the final one); called
        once the model is loaded, before the runner is built."""
        return None

    @abstractmethod
    def _on_loaded(self) -> None:
        """Set up the role's own state once the runner exists (before the loop starts)."""

    @abstractmethod
    def _accept(self, task: Any) -> Sequence[Event] | None:
        """Take a task from the inbox into this worker's own queue (events it answers at once)."""

    def _tick(self) -> list[Event]:
        """Housekeeping between steps (expiring what waited too long); its events."""
        return []

    def _wake_in_s(self) -> float | None:
        """Longest the idle loop may sleep before ``_tick`` is due (None: until woken)."""
        return None

    @abstractmethod
    def _abort(self, request_id: str) -> bool:
        """Drop a request wherever it is here (its KV is freed); False if it is unknown."""

    @abstractmethod
    def _has_work(self) -> bool:
        """Whether a step would do anything."""

    @abstractmethod
    def _step(self) -> Sequence[Event]:
        """One step; the events it produced."""

    @abstractmethod
    def _fail_all(self) -> list[str]:
        """Forget every request held (after a failed step); their ids."""

    @abstractmethod
    def _make_stats(self) -> WorkerStats:
        """The stats after the step just done (``num_tasks_received`` is filled in later)."""


_REMEMBERED_IDS = 1 << 16


def _remember(ids: OrderedDict[str, None], request_id: str) -> None:
    """Add ``request_id`` to a bounded set kept in arrival order (the oldest leave first)."""
    ids[request_id] = None
    ids.move_to_end(request_id)
    if len(ids) > _REMEMBERED_IDS:
        ids.popitem(last=False)


def _node_name() -> str:
    """The Ray node's address when in a Ray worker, else the host name."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.util.get_node_ip_address())
    except ImportError:
        pass
    return socket.gethostname()


def error_event(request_ids: Sequence[str], message: str) -> StepEvent:
    n = len(request_ids)
    return StepEvent(
        kind="error",
        request_ids=tuple(request_ids),
        token_ids=(0,) * n,
        finish_reasons=("error",) * n,
        error=message,
    )
