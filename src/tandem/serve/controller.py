"""The Controller: the control plane's policies driving real workers.

Life of a request through the Controller (the twin of ``sim.cluster``):

1. ``submit``: the registered dispatch policy picks a prefill worker from
   ``PrefillInstanceView``s built from the workers' latest stats (plus what was sent since);
   the request gets its own stream (an asyncio queue) and a ``PrefillTask`` goes out.
2. One poll loop per worker reads ``WorkerUpdate``s: one message per worker step, every row.
3. A prefill event's first token goes to the request's stream at once. Unless the request is
   already done, the registered placement policy picks a decode worker from
   ``DecodeInstanceView``s and the hand-off goes there as a ``DecodeTask``.
4. Decode events fan out to the streams; a finish reason closes the stream.
5. ``abort`` (client gone, stop string reached) cancels the request on the worker holding it.
6. With a rescheduler, every ``interval_s`` the Controller asks it for migrations over the
   same views and carries them out live (``serve.migration``); a request is owned by one
   worker at a time and its tokens are taken only from that worker.

Admission is bounded: ``submit`` refuses a request (``Overloaded``) while ``max_in_flight``
requests are in flight (submitted and not yet finished, failed or aborted), so a flood cannot
queue without end; the front end answers it with a 429.

The policies are the very objects the simulator calls (``control.policies``), unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tandem.control.policies import (
    DecodeRescheduler,
    make_dispatch,
    make_placement,
    make_rescheduler,
)
from tandem.control.views import NewRequestView
from tandem.engine.sampling import SamplingParams
from tandem.errors import ConfigError
from tandem.serve.backends import WorkerHandle
from tandem.serve.messages import (
    ROLE_DECODE,
    DecodeTask,
    MigrationEvent,
    MigrationTask,
    PrefillTask,
    StepEvent,
    WorkerInfo,
    WorkerStats,
)
from tandem.serve.metrics import ServeMetrics
from tandem.serve.migration import LiveMigrations
from tandem.serve.views import ServedDecodeView, ServedPrefillView

log = logging.getLogger("tandem.serve")
POLL_TIMEOUT_S = 0.05
#: A restarting worker is asked to load this often until it does (or the load timeout passes).
READMIT_PAUSE_S = 1.0


class Overloaded(Exception):
    """``submit`` refused a request: ``max_in_flight`` requests are already in flight."""


@dataclass(slots=True)
class Chunk:
    """Tokens for one request, in order; the last chunk has ``finish_reason`` (or ``error``)."""

    token_ids: list[int]
    finish_reason: str | None = None
    error: str | None = None


@dataclass
class _Request:
    request_id: str
    number: int
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    arrival_s: float
    queue: asyncio.Queue[Chunk]
    worker: WorkerHandle
    first_token_s: float | None = None
    last_token_s: float | None = None
    decode_worker: int | None = None
    #: Tokens already sent to the client (a request resumes after them if its worker dies).
    sent_token_ids: list[int] = field(default_factory=list)
    #: Set when a migration stopped it at its source: its last token's time (for the pause).
    pause_from_s: float | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)


@dataclass
class _Sent:
    """Tasks sent to a worker that its stats may not count yet (tokens of each, in order)."""

    tokens: deque[int] = field(default_factory=deque)
    num_sent: int = 0

    def unseen(self, num_received: int) -> tuple[int, int]:
        """(requests, tokens) sent but not yet received by the worker."""
        while len(self.tokens) > self.num_sent - num_received:
            self.tokens.popleft()
        return len(self.tokens), sum(self.tokens)


class _Numbers(Mapping[str, int]):
    """Request id -> the request's number, read live from the requests in flight."""

    def __init__(self, requests: dict[str, _Request]) -> None:
        self._requests = requests

    def __getitem__(self, request_id: str) -> int:
        return self._requests[request_id].number

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._requests

    def __iter__(self) -> Iterator[str]:
        return iter(self._requests)

    def __len__(self) -> int:
        return len(self._requests)


class Controller:
    """See the module docstring."""

    def __init__(
        self,
        prefill: Sequence[WorkerHandle],
        decode: Sequence[WorkerHandle],
        *,
        dispatch: str = "least-queued-tokens",
        placement: str = "least-kv",
        metrics: ServeMetrics | None = None,
        stream_interval_s: float = 0.0,
        max_in_flight: int | None = None,
        rescheduler: DecodeRescheduler | str = "none",
    ) -> None:
        if not prefill or not decode:
            raise ConfigError("serving needs at least one prefill and one decode worker")
        self.prefill = list(prefill)
        self.decode = list(decode)
        self.dispatch = make_dispatch(dispatch)
        self.placement = make_placement(placement)
        self.rescheduler = (
            make_rescheduler(rescheduler) if isinstance(rescheduler, str) else rescheduler
        )
        self.metrics = metrics
        #: Decode workers answer polls at most this often (several steps per answer).
        self.stream_interval_s = stream_interval_s
        #: The most requests in flight at once (None: no limit); see ``has_room``.
        self.max_in_flight = max_in_flight
        self.info: WorkerInfo | None = None
        self.infos: list[WorkerInfo] = []
        self.ready = False
        self.failed: str | None = None
        self._stats: dict[tuple[str, int], WorkerStats] = {}
        self._dead: dict[tuple[str, int], str] = {}
        #: (role, worker id) -> times the worker came back after its process died.
        self.num_restarts: dict[tuple[str, int], int] = {}
        #: Workers whose process died and is being restarted, and tasks waiting for one of
        #: them (when no worker of its role was live to take them).
        self._restarting: set[tuple[str, int]] = set()
        self._parked: list[PrefillTask | DecodeTask] = []
        self.load_timeout_s = 600.0
        self._sent: dict[tuple[str, int], _Sent] = {}
        self._requests: dict[str, _Request] = {}
        self._numbers_view = _Numbers(self._requests)
        self._numbers = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._t0 = time.monotonic()
        self.migrations = LiveMigrations(self)

    # -- life ---------------------------------------------------------------------------------

    async def start(self, load_timeout_s: float = 600.0) -> None:
        """Load every worker (in parallel), check they serve one model, start polling."""
        self.load_timeout_s = load_timeout_s
        handles = [*self.prefill, *self.decode]
        try:
            infos = await asyncio.gather(*(h.load(load_timeout_s) for h in handles))
        except Exception as exc:
            self.failed = f"loading workers failed: {exc}"
            raise
        fingerprints = {i.fingerprint for i in infos}
        if len(fingerprints) != 1:
            self.failed = "workers loaded different models"
            raise ConfigError(self.failed)
        self.infos = list(infos)
        self.info = infos[0]
        for handle, info in zip(handles, infos, strict=True):
            key = (handle.role, handle.worker_id)
            self._stats[key] = self._initial_stats(handle, info)
            self._sent[key] = _Sent()
            self._tasks.append(asyncio.create_task(self._poll_loop(handle)))
        if self.rescheduler.interval_s is not None:
            self._tasks.append(asyncio.create_task(self._reschedule_loop(self.rescheduler)))
        self.ready = True
        for info in infos:
            log.info(
                "%s worker %d ready: %s on %s (pid %d)",
                info.role,
                info.worker_id,
                info.model_name,
                info.node,
                info.pid,
            )

    @staticmethod
    def _initial_stats(handle: WorkerHandle, info: WorkerInfo) -> WorkerStats:
        """Until its first poll answers, a worker is idle with what its config and load say."""
        return WorkerStats(
            worker_id=handle.worker_id,
            role=handle.role,
            kv_capacity_tokens=handle.config.kv_capacity_tokens,
            kv_bytes_per_token=info.kv_bytes_per_token if handle.role == ROLE_DECODE else 0,
            max_batch_size=handle.config.max_batch_size,
        )

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for request in list(self._requests.values()):
            request.queue.put_nowait(Chunk([], "abort", error="server shutting down"))
        self._requests.clear()

    # -- requests -----------------------------------------------------------------------------

    def submit(
        self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> asyncio.Queue[Chunk]:
        """Dispatch a request to prefill; its tokens arrive on the returned queue."""
        if not self.ready:
            raise ConfigError("the server is not ready yet")
        if request_id in self._requests:
            raise ConfigError(f"request id '{request_id}' is already in flight")
        if not self.has_room():
            raise Overloaded(f"{len(self._requests)} requests in flight, the limit")
        number = next(self._numbers)
        now = time.monotonic()
        view = NewRequestView(number, now - self._t0, len(prompt_token_ids))
        worker = self._choose_prefill(view)
        queue: asyncio.Queue[Chunk] = asyncio.Queue()
        prompt = tuple(prompt_token_ids)
        self._requests[request_id] = _Request(
            request_id, number, prompt, params, now, queue, worker
        )
        self._send(worker, PrefillTask(request_id, prompt, params), len(prompt))
        return queue

    def abort(self, request_id: str) -> None:
        """Cancel a request wherever it is; its KV is freed there. Unknown ids are ignored."""
        request = self._requests.pop(request_id, None)
        if request is not None:
            others = self.migrations.on_abort(request_id)
            for worker in {request.worker, *others}:
                if self.is_live(worker):
                    worker.abort([request_id])

    @property
    def num_in_flight(self) -> int:
        return len(self._requests)

    def has_room(self) -> bool:
        """Whether ``submit`` would admit one more request now."""
        return self.max_in_flight is None or len(self._requests) < self.max_in_flight

    def is_active(self, request_id: str) -> bool:
        """Whether ``request_id`` is in flight."""
        return request_id in self._requests

    def request(self, request_id: str) -> _Request | None:
        return self._requests.get(request_id)

    def migrate(self, request_id: str, decode_worker_id: int) -> int | None:
        """Start moving a request to decode worker ``decode_worker_id`` (what a rescheduler's
        ``Migration`` does); the migration's id, or None if it cannot start now (unknown
        request, not decoding, already migrating, same or dead worker)."""
        request = self._requests.get(request_id)
        dest = next((h for h in self.decode if h.worker_id == decode_worker_id), None)
        if request is None or dest is None:
            return None
        return self.migrations.start(request, dest)

    # -- views --------------------------------------------------------------------------------

    def _live(self, handles: Sequence[WorkerHandle]) -> list[WorkerHandle]:
        return [h for h in handles if (h.role, h.worker_id) not in self._dead]

    def _owned_by(self, request_id: str, handle: WorkerHandle) -> bool:
        request = self._requests.get(request_id)
        return request is not None and request.worker is handle

    def is_live(self, handle: WorkerHandle) -> bool:
        return (handle.role, handle.worker_id) not in self._dead

    def _restarting_one(self, handles: Sequence[WorkerHandle]) -> WorkerHandle | None:
        """A worker of ``handles`` whose process is being restarted (tasks sent to it wait for
        it: ``_send`` parks them), or None."""
        for handle in handles:
            if (handle.role, handle.worker_id) in self._restarting:
                return handle
        return None

    def _choose_prefill(self, view: NewRequestView) -> WorkerHandle:
        live = self._live(self.prefill)
        if not live:
            restarting = self._restarting_one(self.prefill)
            if restarting is not None:
                return restarting
            raise ConfigError("every prefill worker is gone")
        return live[self.dispatch.choose(view, self.prefill_views())]

    def prefill_views(self) -> list[ServedPrefillView]:
        """Views of the live prefill workers (what dispatch chooses among)."""
        views = []
        for handle in self._live(self.prefill):
            key = (handle.role, handle.worker_id)
            stats = self._stats[key]
            count, tokens = self._sent[key].unseen(stats.num_tasks_received)
            views.append(ServedPrefillView(stats, count, tokens))
        return views

    def decode_views(self) -> list[ServedDecodeView]:
        """Views of the live decode workers (what placement chooses among)."""
        assert self.info is not None
        views = []
        for handle in self._live(self.decode):
            key = (handle.role, handle.worker_id)
            stats = self._stats[key]
            count, tokens = self._sent[key].unseen(stats.num_tasks_received)
            views.append(
                ServedDecodeView(
                    stats, count, tokens, self.info.kv_bytes_per_token, self._numbers_view
                )
            )
        return views

    def worker_stats(self) -> list[WorkerStats]:
        """The live workers' latest stats (a dead worker's last ones describe nothing now)."""
        return [stats for key, stats in self._stats.items() if key not in self._dead]

    @property
    def dead_workers(self) -> dict[tuple[str, int], str]:
        """(role, worker id) -> why, for workers whose process or actor is gone."""
        return dict(self._dead)

    # -- the poll loops ------------------------------------------------------------------------

    def _send(self, worker: WorkerHandle, task: PrefillTask | DecodeTask, tokens: int) -> None:
        key = (worker.role, worker.worker_id)
        if key in self._dead:
            if key in self._restarting and isinstance(task, PrefillTask | DecodeTask):
                self._parked.append(task)  # sent when the worker is back
                return
            self._fail_requests([task.request_id], self._dead[key])
            return
        self.send_control(worker, task, tokens)

    def send_control(
        self, worker: WorkerHandle, task: PrefillTask | DecodeTask | MigrationTask, tokens: int
    ) -> bool:
        """Send ``task`` (counted as ``tokens`` pending there until the worker sees it);
        False if the worker is gone."""
        key = (worker.role, worker.worker_id)
        if key in self._dead:
            return False
        sent = self._sent[key]
        sent.tokens.append(tokens)
        sent.num_sent += 1
        worker.submit([task])
        return True

    def send_decode_task(self, request: _Request, worker: WorkerHandle, task: DecodeTask) -> None:
        """Place a request whose hand-off is ``task.handoff`` on ``worker`` (another live
        decode worker by the placement policy if that one is gone)."""
        if not self.is_live(worker):
            self._place(request, task.handoff, task.kv_tokens)
            return
        request.worker = worker
        request.decode_worker = worker.worker_id
        self._send(worker, task, task.kv_tokens)

    async def _reschedule_loop(self, rescheduler: DecodeRescheduler) -> None:
        interval = rescheduler.interval_s
        assert interval is not None
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                self._reschedule(rescheduler)
            except Exception:  # a policy bug must not stop serving
                log.exception("rescheduler %s failed", type(rescheduler).__name__)

    def _reschedule(self, rescheduler: DecodeRescheduler) -> None:
        live = self._live(self.decode)
        if len(live) < 2 or not self._requests:
            return
        plans = rescheduler.plan(time.monotonic() - self._t0, self.decode_views())
        if not plans:
            return
        by_number = {r.number: r for r in self._requests.values()}
        for plan in plans:
            request = by_number.get(plan.request_id)
            if request is None or not (0 <= plan.destination < len(live)):
                continue
            if request.worker is not live[plan.source]:
                continue  # the view was stale: the request is no longer there
            self.migrations.start(request, live[plan.destination])

    async def _poll_loop(self, handle: WorkerHandle) -> None:
        key = (handle.role, handle.worker_id)
        # Prefill answers at once (TTFT); decode batches steps per answer (throughput).
        linger_s = self.stream_interval_s if handle.role == ROLE_DECODE else 0.0
        while not self._stopping:
            try:
                update = await handle.poll(POLL_TIMEOUT_S, linger_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s worker %d is gone: %s", handle.role, handle.worker_id, exc)
                if handle.restarts:
                    self._restarting.add(key)
                self._fail_worker(handle, f"{handle.role} worker {handle.worker_id} failed: {exc}")
                if handle.restarts and await self._readmit(handle):
                    continue
                return
            self._stats[key] = update.stats
            now = time.monotonic()
            for event in update.events:
                try:
                    self._on_event(handle, event, now)
                except Exception:  # a bug here must not stop the loop that serves everyone
                    log.exception(
                        "handling a %s of %s worker %d failed",
                        type(event).__name__,
                        handle.role,
                        handle.worker_id,
                    )
                    ids = (
                        (event.request_id,)
                        if isinstance(event, MigrationEvent)
                        else event.request_ids
                    )
                    self._fail_requests(ids, "internal error handling a step")

    def _on_event(
        self, handle: WorkerHandle, event: StepEvent | MigrationEvent, now: float
    ) -> None:
        if isinstance(event, MigrationEvent):
            self.migrations.on_event(handle, event, now)
            return
        if event.kind == "error":
            owned = [r for r in event.request_ids if self._owned_by(r, handle)]
            self._fail_requests(owned, event.error or "the worker failed the request")
            return
        for row, request_id in enumerate(event.request_ids):
            request = self._requests.get(request_id)
            if request is None:
                continue  # aborted meanwhile (its KV, if any, is dropped with the message)
            if request.worker is not handle:
                log.error("dropped a token of %s from a worker that does not own it", request_id)
                continue
            reason = event.finish_reasons[row]
            request.sent_token_ids.append(event.token_ids[row])
            self._record_token(request, handle, now, reason)
            request.queue.put_nowait(Chunk([event.token_ids[row]], reason))
            if reason is not None:
                del self._requests[request_id]
            elif event.kind == "prefill":
                self._place(request, event.handoffs[row], event.kv_tokens[row])

    def _place(self, request: _Request, handoff: object, kv_tokens: int) -> None:
        view = NewRequestView(request.number, request.arrival_s - self._t0, request.prompt_tokens)
        live = self._live(self.decode)
        if live:
            worker = live[self.placement.choose(view, self.decode_views())]
        else:
            # No decode worker is live; one being restarted takes it when it is back (the KV
            # stays with the prefill worker until then), as prefill tasks wait for theirs.
            restarting = self._restarting_one(self.decode)
            if restarting is None:
                self._fail_requests([request.request_id], "every decode worker is gone")
                return
            worker = restarting
        request.worker = worker
        request.decode_worker = worker.worker_id
        self._send(
            worker,
            DecodeTask(
                request.request_id,
                kv_tokens,
                handoff,
                max_new_tokens=request.params.max_new_tokens or 0,
                ignore_eos=request.params.ignore_eos,
            ),
            kv_tokens,
        )

    def _record_token(
        self, request: _Request, handle: WorkerHandle, now: float, reason: str | None
    ) -> None:
        metrics = self.metrics
        if request.first_token_s is None:
            request.first_token_s = now
            if metrics is not None:
                metrics.observe_ttft(handle.worker_id, now - request.arrival_s)
        elif metrics is not None and request.last_token_s is not None:
            metrics.observe_itl(handle.worker_id, now - request.last_token_s)
        if request.pause_from_s is not None and handle.role == ROLE_DECODE:
            self.migrations.observe_pause(now - request.pause_from_s)
            request.pause_from_s = None
        request.last_token_s = now
        if reason is not None and metrics is not None:
            worker = request.decode_worker if request.decode_worker is not None else -1
            metrics.observe_finished(
                worker,
                e2e_s=now - request.arrival_s,
                ttft_s=request.first_token_s - request.arrival_s,
                num_output_tokens=len(request.sent_token_ids),
            )

    def _fail_requests(self, request_ids: Sequence[str], message: str) -> None:
        """End these requests (those still in flight) with an error on their streams."""
        for request_id in request_ids:
            request = self._requests.pop(request_id, None)
            if request is not None:
                log.warning("request %s failed: %s", request_id, message)
                request.queue.put_nowait(Chunk([], "error", error=message))

    def _fail_worker(self, handle: WorkerHandle, message: str) -> None:
        """A worker is gone: each of its requests resumes elsewhere, or fails if it cannot."""
        self._dead[(handle.role, handle.worker_id)] = message
        self.migrations.on_worker_failed(handle)
        for request_id, request in list(self._requests.items()):
            if request.worker is not handle:
                continue
            try:
                self._resume(request)
            except ConfigError as exc:
                self._fail_requests([request_id], f"{message}; cannot resume: {exc}")

    def resume(self, request: _Request) -> None:
        """``_resume``, failing the request if it cannot resume."""
        try:
            self._resume(request)
        except ConfigError as exc:
            self._fail_requests([request.request_id], f"cannot resume: {exc}")

    async def _readmit(self, handle: WorkerHandle) -> bool:
        """Load a restarted worker again and take it back into dispatch and placement; False
        if it does not come back (no restarts left, or it loads another model). Prefill tasks
        and decode tasks parked for it meanwhile (no other worker of its role was live) go to it
        then, or fail."""
        key = (handle.role, handle.worker_id)
        back = False
        try:
            back = await self._reload(handle, key)
        finally:
            self._restarting.discard(key)
            parked = [t for t in self._parked if self._owned_by(t.request_id, handle)]
            self._parked = [t for t in self._parked if t not in parked]
            for task in parked:
                if back:
                    tokens = (
                        task.kv_tokens
                        if isinstance(task, DecodeTask)
                        else len(task.prompt_token_ids)
                    )
                    self._send(handle, task, tokens)
                else:
                    self._fail_requests([task.request_id], self._dead.get(key, "worker gone"))
        return back

    async def _reload(self, handle: WorkerHandle, key: tuple[str, int]) -> bool:
        deadline = time.monotonic() + self.load_timeout_s
        attempt = 0
        while True:  # Ray answers "restarting" until the new process is up
            if self._stopping:
                return False
            attempt += 1
            try:
                info = await handle.load(self.load_timeout_s)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error(
                        "%s worker %d did not come back: %s", handle.role, handle.worker_id, exc
                    )
                    return False
                log.info(
                    "%s worker %d not back yet (attempt %d): %s",
                    handle.role,
                    handle.worker_id,
                    attempt,
                    exc,
                )
                await asyncio.sleep(READMIT_PAUSE_S)
        if self.info is not None and info.fingerprint != self.info.fingerprint:
            log.error("%s worker %d came back with another model", handle.role, handle.worker_id)
            return False
        self._stats[key] = self._initial_stats(handle, info)
        self._sent[key] = _Sent()
        self.infos = [info if (i.role, i.worker_id) == key else i for i in self.infos]
        del self._dead[key]
        self.num_restarts[key] = self.num_restarts.get(key, 0) + 1
        log.warning(
            "%s worker %d restarted (pid %d) and is serving again",
            handle.role,
            handle.worker_id,
            info.pid,
        )
        return True

    def _resume(self, request: _Request) -> None:
        """Prefill the prompt plus the tokens already sent again, on a live prefill worker; the
        stream goes on from the next token (none lost, none repeated; greedy output equals the
        unfailed run's, a sampled one continues from a fresh draw of its seed)."""
        sent = len(request.sent_token_ids)
        remaining = (request.params.max_new_tokens or 0) - sent
        if remaining < 1:
            del self._requests[request.request_id]
            request.queue.put_nowait(Chunk([], "length"))
            return
        params = replace(
            request.params,
            max_new_tokens=remaining,
            min_tokens=max(0, request.params.min_tokens - sent),
        )
        prompt = request.prompt_token_ids + tuple(request.sent_token_ids)
        view = NewRequestView(request.number, request.arrival_s - self._t0, len(prompt))
        worker = self._choose_prefill(view)
        request.worker = worker
        request.decode_worker = None
        log.warning(
            "request %s resumes on prefill worker %d after %d tokens",
            request.request_id,
            worker.worker_id,
            sent,
        )
        self._send(worker, PrefillTask(request.request_id, prompt, params), len(prompt))
