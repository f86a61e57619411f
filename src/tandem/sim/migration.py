"""Live migration of a running request between decode instances (after Llumnix).

Life of a migration:

1. The rescheduler asks to move request r from S to D. Memory is reserved on D first: r's KV
   now plus what it will generate while the bulk copy runs. If D has no room, the migration is
   aborted and r stays on S (counted in ``num_migrations_aborted``).
2. Stage 1: r's current KV is copied over D's inbound link while r keeps decoding on S.
3. At the end of stage 1, r leaves S's batch at S's next step boundary. If r finished or was
   preempted meanwhile, the migration is cancelled and D's reservation released.
4. Stage 2 (the pause): the tokens r generated during stage 1 are copied; r does not decode.
5. r joins D's batch at D's next step boundary. Its pause (leaving S to joining D) is recorded.

Link time is charged on D's inbound link, shared with prefill-to-decode KV transfers.

A request that still *waits for memory* on S (its KV not yet pulled from prefill, or dropped by
a preemption) is simply re-placed: it leaves S's queue and joins the back of D's, nothing is
copied, and it is counted in ``num_replaced``, not as a migration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tandem.control.policies import Migration
from tandem.perf.base import CostModel
from tandem.sim.decode import DecodeInstance
from tandem.sim.events import EventQueue, Priority
from tandem.sim.request import SimRequest


@dataclass
class MigrationStats:
    num_migrations: int = 0
    num_migrations_aborted: int = 0
    num_migrations_cancelled: int = 0
    #: Requests moved while still waiting for memory (nothing copied).
    num_replaced: int = 0
    migrated_bytes: int = 0
    pause_s: float = 0.0


@dataclass
class _InFlight:
    request: SimRequest
    source: DecodeInstance
    destination: DecodeInstance
    reserved_tokens: int
    generated_at_start: int
    preemptions_at_start: int
    flight_id: int
    bytes_moved: int = field(default=0)


class MigrationManager:
    """Carries out the rescheduler's migrations inside one simulation run."""

    def __init__(
        self,
        queue: EventQueue,
        decode: Sequence[DecodeInstance],
        cost: CostModel,
        request_by_id: dict[int, SimRequest],
    ) -> None:
        self._queue = queue
        self._decode = decode
        self._cost = cost
        self._request_by_id = request_by_id
        self._in_flight: dict[int, _InFlight] = {}
        self._next_flight_id = 0
        self.stats = MigrationStats()

    def start(self, migration: Migration, now_s: float) -> bool:
        """Begin a migration; False (and counted) when it cannot start."""
        request = self._request_by_id.get(migration.request_id)
        n = len(self._decode)
        if (
            request is None
            or request.index in self._in_flight
            or not (0 <= migration.source < n and 0 <= migration.destination < n)
            or migration.source == migration.destination
        ):
            self.stats.num_migrations_aborted += 1
            return False
        source = self._decode[migration.source]
        destination = self._decode[migration.destination]
        if source.running_request(request.index) is None:
            if source.withdraw(request):  # still waiting for memory: re-place it, copy nothing
                destination.place(request, now_s)
                self.stats.num_replaced += 1
                return True
            self.stats.num_migrations_aborted += 1
            return False
        generated = source.generated_now(request)
        kv_tokens = request.prompt_tokens + generated
        copy_s = self._cost.kv_transfer_time_s(kv_tokens)
        step_s = source.cost.decode_step_time_s(source.num_running, source.kv_used_tokens)
        growth = math.ceil(copy_s / step_s) + 2 if step_s > 0 else 2
        remaining = request.output_tokens - generated
        reserve = kv_tokens + min(growth, remaining)
        if not destination.can_reserve(reserve):
            self.stats.num_migrations_aborted += 1
            return False
        destination.reserve(reserve, now_s, request)
        self._next_flight_id += 1
        flight = _InFlight(
            request,
            source,
            destination,
            reserve,
            generated,
            request.num_preemptions,
            self._next_flight_id,
        )
        flight.bytes_moved = kv_tokens * self._cost.kv_bytes_per_token
        self._in_flight[request.index] = flight
        end = max(now_s, destination.link_free_s) + copy_s
        destination.link_free_s = end
        self._queue.push(end, Priority.MIGRATION_DONE, ("bulk", request.index, flight.flight_id))
        return True

    def on_event(self, stage: str, index: int, flight_id: int, now_s: float) -> None:
        flight = self._in_flight.get(index)
        if flight is None or flight.flight_id != flight_id:
            return  # cancelled since (the request finished or was preempted)
        if stage == "bulk":
            self._bulk_copied(flight, now_s)
        else:
            self._arrived(flight, now_s)

    def _bulk_copied(self, flight: _InFlight, now_s: float) -> None:
        request = flight.request
        if (
            request.finish_s is not None
            or request.num_preemptions != flight.preemptions_at_start
            or flight.source.running_request(request.index) is None
        ):
            self._cancel(flight)
            return
        flight.source.leave(request, now_s)

    def on_left(self, request: SimRequest, now_s: float) -> None:
        """Called by the source at the step boundary where the request left its batch."""
        flight = self._in_flight[request.index]
        request.paused_since_s = now_s
        delta = request.generated - flight.generated_at_start
        flight.bytes_moved += delta * self._cost.kv_bytes_per_token
        destination = flight.destination
        end = max(now_s, destination.link_free_s) + self._cost.kv_transfer_time_s(delta)
        destination.link_free_s = end
        self._queue.push(end, Priority.MIGRATION_DONE, ("final", request.index, flight.flight_id))

    def _arrived(self, flight: _InFlight, now_s: float) -> None:
        request = flight.request
        del self._in_flight[request.index]
        request.need_tokens = request.prompt_tokens + request.generated
        request.decode_instance = flight.destination.instance_id
        request.num_migrations += 1
        self.stats.num_migrations += 1
        self.stats.migrated_bytes += flight.bytes_moved
        flight.destination.migration_arrived(request, flight.reserved_tokens, now_s)

    def _cancel(self, flight: _InFlight) -> None:
        del self._in_flight[flight.request.index]
        flight.destination.release(flight.reserved_tokens, flight.request)
        self.stats.num_migrations_cancelled += 1

    def on_finished(self, request: SimRequest) -> None:
        """A request finished; a migration of it still in flight is cancelled."""
        flight = self._in_flight.get(request.index)
        if flight is not None:
            self._cancel(flight)

    def finalize_pauses(self, requests: Sequence[SimRequest]) -> None:
        self.stats.pause_s = sum(r.pause_s for r in requests)
