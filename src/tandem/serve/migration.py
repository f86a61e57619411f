"""Live migration of running requests between decode workers (the twin of ``sim.migration``).

The Controller carries out each ``Migration`` a rescheduler returns (or one asked for by hand,
``Controller.migrate``) in stages, as Llumnix does; every stage is a ``MigrationTask`` to one
worker and a ``MigrationEvent`` back:

1. ``reserve`` at the destination D: KV for the request's tokens now plus
   ``MARGIN_TOKENS`` it may generate during the copy, under the same admission rule as any
   newcomer (counting what already waits there). No room: ``refused``, the migration is
   *aborted* and the request goes on at the source S.
2. ``copy`` at S: S exports the request's KV so far and keeps decoding it (``staged``).
   A request that still *waits* at S (its KV at the prefill side, or dropped by a preemption)
   is handed back instead (``replaced``) and goes to D's queue as a new placement: nothing is
   copied.
3. ``stage`` at D: D keeps that first copy (``received``).
4. ``detach`` at S: S stops the request and exports the KV generated since the first copy with
   the sampler state (``detached``); S's memory is freed. The client's stream pauses here.
5. ``commit`` at D: D joins both parts, attaches the request and decodes it (``committed``);
   the stream goes on from D, the pause is recorded.

Exactly once, whatever happens: a request is owned by one worker at a time (``_Request.worker``
in the Controller: S until ``detached``, D after), and the Controller takes tokens of a request
only from its owner. If the request finishes or is cancelled at S before ``detach``, S answers
``gone`` and D's reservation is released (*cancelled*). If D refuses, fails or lets the
reservation expire (``migration_timeout_s``) before ``detach``, the request stays at S
(*aborted*); after ``detach``, the request resumes through the Controller's failure path (its
prompt and sent tokens prefilled again; none lost or repeated). If S dies, its requests
resume that way and D's reservation is released; if D dies, likewise. A client that leaves
mid-migration is aborted at both S and D.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tandem.control.policies import DecodeRescheduler, make_rescheduler
from tandem.errors import ConfigError
from tandem.serve.messages import DecodeTask, MigrationEvent, MigrationTask

if TYPE_CHECKING:
    from tandem.serve.backends import WorkerHandle
    from tandem.serve.controller import Controller, _Request

log = logging.getLogger("tandem.serve")

#: Reserved beyond the request's KV now: tokens it may generate while its first stage copies.
MARGIN_TOKENS = 16
#: Finished migrations (and pauses) kept for inspection; totals are in the metrics.
KEEP_RECORDS = 10_000


RESCHEDULERS = ("none", "llumnix", "ares")
LLUMNIX_MIN_FREE_STEPS = 16.0


def live_rescheduler(
    name: str, *, interval_s: float, horizon_tokens: int, cooldown_s: float
) -> DecodeRescheduler:
    """The named rescheduler with its clock and horizons scaled to the served model (the
    simulator's defaults suit requests of thousands of tokens over tens of seconds; a
    stories260K request lives well under a second to a few seconds in a 512-token context)."""
    from tandem.control.ares import AresRescheduler
    from tandem.control.llumnix import LlumnixRescheduler

    if name not in RESCHEDULERS:
        raise ConfigError(f"unknown --rescheduler '{name}'; known: {', '.join(RESCHEDULERS)}")
    if interval_s <= 0 or horizon_tokens < 1 or cooldown_s < 0:
        raise ConfigError(
            "--reschedule-interval-ms must be > 0, --reschedule-horizon >= 1 and "
            "--reschedule-cooldown >= 0"
        )
    if name == "llumnix":
        # A worker is a source once it has free KV for fewer than this many steps of its
        # batch: on a small model several steps pass between two ticks, and Llumnix's 3
        # would see the wall only after hitting it.
        return LlumnixRescheduler(interval_s=interval_s, min_free_steps=LLUMNIX_MIN_FREE_STEPS)
    if name == "ares":
        return AresRescheduler(
            interval_s=interval_s,
            horizon_tokens=horizon_tokens,
            min_remaining_tokens=max(1, horizon_tokens // 16),
            cooldown_s=cooldown_s,
            urgent_steps=max(1.0, horizon_tokens / 16),
        )
    return make_rescheduler("none")


@dataclass
class _Live:
    migration_id: int
    request_id: str
    source: WorkerHandle
    dest: WorkerHandle
    #: reserving -> copying -> staging -> detaching -> attaching
    phase: str
    started_s: float
    first_tokens: int = 0
    num_bytes: int = 0
    #: Set when D can no longer take the request while S may still detach it.
    orphaned: str | None = None


@dataclass(frozen=True)
class MigrationRecord:
    """One finished migration (what experiments and tests read)."""

    request_id: str
    source: int
    destination: int
    outcome: str
    num_bytes: int
    duration_s: float
    detail: str = ""
    #: When it ended (``time.monotonic``).
    ended_s: float = 0.0


class LiveMigrations:
    """The Controller's migrations in flight; see the module docstring."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self._ids = itertools.count()
        self._live: dict[int, _Live] = {}
        self._by_request: dict[str, int] = {}
        #: The latest finished migrations and stream pauses (bounded: a server runs for long).
        self.records: deque[MigrationRecord] = deque(maxlen=KEEP_RECORDS)
        self.pauses_s: deque[float] = deque(maxlen=KEEP_RECORDS)

    def is_migrating(self, request_id: str) -> bool:
        return request_id in self._by_request

    @property
    def num_in_flight(self) -> int:
        return len(self._live)

    # -- starting ---------------------------------------------------------------------------

    def start(self, request: _Request, dest: WorkerHandle) -> int | None:
        """Begin moving ``request`` from its decode worker to ``dest``; its migration id, or
        None if it cannot start (already migrating, not at a decode worker, same worker)."""
        source = request.worker
        if (
            request.request_id in self._by_request
            or request.decode_worker is None
            or source is dest
            or not self._controller.is_live(dest)
        ):
            return None
        live = _Live(
            next(self._ids), request.request_id, source, dest, "reserving", time.monotonic()
        )
        kv_tokens = request.prompt_tokens + len(request.sent_token_ids) + MARGIN_TOKENS
        task = MigrationTask(
            request.request_id,
            live.migration_id,
            "reserve",
            kv_tokens=kv_tokens,
            max_new_tokens=request.params.max_new_tokens or 0,
            ignore_eos=request.params.ignore_eos,
        )
        self._live[live.migration_id] = live
        self._by_request[request.request_id] = live.migration_id
        if not self._controller.send_control(dest, task, kv_tokens):
            self._end(live, "aborted", "destination is gone")
            return None
        return live.migration_id

    # -- events -----------------------------------------------------------------------------

    def on_event(self, handle: WorkerHandle, event: MigrationEvent, now: float) -> None:
        live = self._live.get(event.migration_id)
        if live is None:
            return  # ended meanwhile (its KV, if any, is dropped with the message)
        handler = _HANDLERS.get(event.outcome)
        if handler is None:
            log.error("unknown migration outcome %r from %s", event.outcome, handle)
            return
        request = self._controller.request(live.request_id)
        if request is None and event.outcome != "detached":
            self._release(live)
            self._end(live, "cancelled", "the request ended")
            return
        handler(self, live, event, request, now)

    def _reserved(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        assert request is not None
        if request.worker is not live.source:  # resumed elsewhere meanwhile
            self._release(live)
            self._end(live, "cancelled", "the request moved meanwhile")
            return
        live.phase = "copying"
        self._to(live.source, live, MigrationTask(live.request_id, live.migration_id, "copy"))

    def _refused(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        self._end(live, "aborted", event.detail)

    def _staged(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        live.first_tokens = event.kv_tokens
        live.num_bytes += event.num_bytes
        live.phase = "staging"
        task = MigrationTask(live.request_id, live.migration_id, "stage", box=event.box)
        self._to(live.dest, live, task)

    def _replaced(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        assert request is not None
        self._release(live)
        self._end(live, "replaced")
        request.worker = live.dest
        request.decode_worker = live.dest.worker_id
        self._controller.send_decode_task(
            request,
            live.dest,
            DecodeTask(
                request.request_id,
                event.kv_tokens,
                event.box,
                max_new_tokens=request.params.max_new_tokens or 0,
                ignore_eos=request.params.ignore_eos,
            ),
        )

    def _received(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        live.phase = "detaching"
        task = MigrationTask(
            live.request_id, live.migration_id, "detach", from_token=live.first_tokens
        )
        self._to(live.source, live, task)

    def _detached(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        live.num_bytes += event.num_bytes
        if request is None:  # cancelled by its client after S let it go
            self._release(live)
            self._end(live, "cancelled", "the request ended")
            return
        request.pause_from_s = request.last_token_s
        if live.orphaned is not None:
            self._end(live, "aborted", live.orphaned)
            self._controller.resume(request)
            return
        live.phase = "attaching"
        request.worker = live.dest
        request.decode_worker = live.dest.worker_id
        task = MigrationTask(live.request_id, live.migration_id, "commit", box=event.box)
        self._to(live.dest, live, task)

    def _committed(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        self._end(live, "migrated")

    def _dest_failed(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        why = f"destination: {event.outcome} ({event.detail})"
        if live.phase == "attaching":  # S let it go: it resumes through the failure path
            self._end(live, "aborted", why)
            assert request is not None
            self._controller.resume(request)
        elif live.phase == "detaching":  # S may be letting it go right now
            live.orphaned = why
        else:
            self._end(live, "aborted", why)

    def _gone(
        self, live: _Live, event: MigrationEvent, request: _Request | None, now: float
    ) -> None:
        self._release(live)
        self._end(live, "cancelled", event.detail)

    # -- failures and cancellation -----------------------------------------------------------

    def on_abort(self, request_id: str) -> list[WorkerHandle]:
        """The client left: the workers besides its owner to abort it at (D's reservation)."""
        migration_id = self._by_request.get(request_id)
        if migration_id is None:
            return []
        live = self._live[migration_id]
        self._end(live, "cancelled", "the client left")
        return [live.source, live.dest]

    def on_worker_failed(self, handle: WorkerHandle) -> None:
        """``handle`` is gone; call before its requests are resumed."""
        for live in list(self._live.values()):
            why = f"{handle.role} worker {handle.worker_id} failed"
            if handle is live.dest:
                if live.phase == "detaching":
                    live.orphaned = why
                else:  # attaching: the request's owner is D and it resumes with D's others
                    self._end(live, "aborted", why)
            elif handle is live.source and live.phase != "attaching":
                self._release(live)
                self._end(live, "aborted", why)

    # -- helpers ----------------------------------------------------------------------------

    def _to(self, worker: WorkerHandle, live: _Live, task: MigrationTask) -> None:
        if self._controller.send_control(worker, task, 0):
            return
        # The worker is gone; its failure handling (on_worker_failed) has run or will run.
        if worker is live.dest and live.phase in ("copying", "staging"):
            self._end(live, "aborted", "destination is gone")

    def _release(self, live: _Live) -> None:
        task = MigrationTask(live.request_id, live.migration_id, "release")
        self._controller.send_control(live.dest, task, 0)

    def _end(self, live: _Live, outcome: str, detail: str = "") -> None:
        if self._live.pop(live.migration_id, None) is None:
            return
        self._by_request.pop(live.request_id, None)
        now = time.monotonic()
        self.records.append(
            MigrationRecord(
                live.request_id,
                live.source.worker_id,
                live.dest.worker_id,
                outcome,
                live.num_bytes,
                now - live.started_s,
                detail,
                now,
            )
        )
        metrics = self._controller.metrics
        if metrics is not None:
            metrics.observe_migration(outcome, live.num_bytes if outcome == "migrated" else 0)
        if outcome != "migrated":
            log.info("migration of %s %s: %s", live.request_id, outcome, detail)

    def observe_pause(self, seconds: float) -> None:
        self.pauses_s.append(seconds)
        if self._controller.metrics is not None:
            self._controller.metrics.observe_migration_pause(seconds)


_Handler = Callable[[LiveMigrations, _Live, MigrationEvent, "_Request | None", float], None]
_HANDLERS: dict[str, _Handler] = {
    "reserved": LiveMigrations._reserved,
    "refused": LiveMigrations._refused,
    "staged": LiveMigrations._staged,
    "replaced": LiveMigrations._replaced,
    "received": LiveMigrations._received,
    "detached": LiveMigrations._detached,
    "committed": LiveMigrations._committed,
    "failed": LiveMigrations._dest_failed,
    "expired": LiveMigrations._dest_failed,
    "gone": LiveMigrations._gone,
}
