"""Live migration between decode workers (issue 15), in-process workers, real HTTP streams.

A migration is started through ``Controller.migrate`` (what a rescheduler's ``Migration``
does) while the client streams; its text must equal the same request's without migration.
Abort paths are produced by the state of real workers (a full destination, a request that
ends at its source, a destination that stops), never by mocks; waits count events, never time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")

MODEL = "stories260K"
PROMPT = "Once upon a time"  # 5 tokens with BOS
HANG_GUARD_S = 60.0


def stream(url: str, request_id: str, max_tokens: int, **params: Any) -> dict[str, Any]:
    """A streaming completion forced to ``max_tokens`` (greedy unless ``params`` say otherwise):
    its text, finish reasons and usage."""
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **params,
    }
    text, reasons, usage = [], [], None
    headers = {"X-Request-Id": request_id}
    with httpx.stream(
        "POST", f"{url}/v1/completions", json=body, headers=headers, timeout=HANG_GUARD_S
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                text.append(choice["text"])
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
    return {"text": "".join(text), "reasons": reasons, "usage": usage}


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        box["result"] = fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def when(thread: Any, fn: Callable[[Any], Any], what: str) -> Any:
    """Call ``fn(controller)`` on the server's loop until it returns something not None."""
    controller = thread.server.front.controller
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        result = thread.call(lambda: fn(controller))
        if result is not None:
            return result
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def migrate_after(tokens: int, request_id: str) -> Callable[[Any], Any]:
    """Start moving ``request_id`` to the other decode worker once it has sent ``tokens``."""

    def attempt(controller: Any) -> Any:
        request = controller.request(request_id)
        if request is None or request.decode_worker is None:
            return None
        if len(request.sent_token_ids) < tokens:
            return None
        others = [h.worker_id for h in controller.decode if h is not request.worker]
        return controller.migrate(request_id, others[0])

    return attempt


def record_of(thread: Any, request_id: str) -> Any:
    def find(controller: Any) -> Any:
        records = [r for r in controller.migrations.records if r.request_id == request_id]
        return records[-1] if records else None

    return when(thread, find, f"the migration of {request_id} to end")


def assert_idle(thread: Any) -> None:
    """Nothing left anywhere: no request in flight, no migration, no KV or reservation."""

    def idle(controller: Any) -> Any:
        stats = controller.worker_stats()
        busy = (
            controller.num_in_flight
            or controller.migrations.num_in_flight
            or any(s.kv_used_tokens or s.kv_reserved_tokens or s.num_waiting for s in stats)
        )
        return None if busy else True

    when(thread, idle, "the server to be idle")


@pytest.mark.parametrize(
    "params", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 11}], ids=["greedy", "seeded"]
)
def test_a_forced_migration_mid_stream_gives_the_tokens_of_the_unmigrated_request(
    local_server, params
):
    url, thread = local_server
    reference = stream(url, f"ref-{params['temperature']}", 250, **params)
    request_id = f"mig-{params['temperature']}"
    client, box = in_background(lambda: stream(url, request_id, 250, **params))
    when(thread, migrate_after(60, request_id), "a migration to start")
    client.join(HANG_GUARD_S)
    record = record_of(thread, request_id)
    assert record.outcome == "migrated", record
    assert record.num_bytes > 0
    assert box["result"]["text"] == reference["text"]
    assert box["result"]["reasons"] == ["length"]
    assert box["result"]["usage"]["completion_tokens"] == 250
    controller = thread.server.front.controller
    assert thread.call(lambda: len(controller.migrations.pauses_s)) >= 1
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'tandem:migrations_total{model_name="stories260K",outcome="migrated"}' in metrics
    assert "tandem:migration_pause_seconds_count" in metrics
    assert_idle(thread)


@pytest.fixture(scope="module")
def tight_server():
    """1 prefill + 2 decode workers of 420 KV tokens each (one 400-token request fills one)."""
    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    thread = ServerThread(
        ServeConfig(backend="local", port=0, decode_kv_tokens=420, placement="least-kv")
    )
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


def test_a_migration_to_a_full_destination_is_aborted_and_the_request_goes_on(tight_server):
    url, thread = tight_server
    reference = stream(url, "full-ref", 380)
    first, first_box = in_background(lambda: stream(url, "full-a", 380))
    when(thread, _placed("full-a"), "full-a to decode")
    second, second_box = in_background(lambda: stream(url, "full-b", 380))
    # Both decode; each worker's free KV is now less than the other's request needs.
    when(thread, _both_past(["full-a", "full-b"], 250), "both requests past 250 tokens")
    when(thread, migrate_after(250, "full-a"), "the migration to start")
    record = record_of(thread, "full-a")
    first.join(HANG_GUARD_S)
    second.join(HANG_GUARD_S)
    assert record.outcome == "aborted" and "no room" in record.detail
    assert first_box["result"]["text"] == reference["text"]
    assert second_box["result"]["text"] == reference["text"]
    assert_idle(thread)


def test_a_request_that_finishes_at_its_source_during_the_copy_is_cancelled(tight_server):
    url, thread = tight_server
    reference = stream(url, "end-ref", 200)
    client, box = in_background(lambda: stream(url, "end-a", 200))
    # One or two tokens left: it ends at the source long before the copy's round trips.
    when(thread, migrate_after(198, "end-a"), "the migration to start")
    record = record_of(thread, "end-a")
    client.join(HANG_GUARD_S)
    assert record.outcome == "cancelled", record
    assert box["result"]["text"] == reference["text"]
    assert box["result"]["usage"]["completion_tokens"] == 200
    assert_idle(thread)


def test_a_migration_whose_destination_stops_ends_with_the_request_running_once(tight_server):
    """Last in the module: it stops one of the server's two decode workers."""
    url, thread = tight_server
    reference = stream(url, "gone-ref", 300)
    client, box = in_background(lambda: stream(url, "gone-a", 300))

    def migrate_and_stop_destination(controller: Any) -> Any:
        migration = migrate_after(50, "gone-a")(controller)
        if migration is None:
            return None
        request = controller.request("gone-a")
        dest = next(h for h in controller.decode if h is not request.worker)
        dest.worker.stop()  # its loop ends; its next poll says it is gone
        return migration

    when(thread, migrate_and_stop_destination, "the migration to start")
    record = record_of(thread, "gone-a")
    client.join(HANG_GUARD_S)
    assert record.outcome == "aborted", record
    assert box["result"]["text"] == reference["text"]
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 503  # the local backend reports the loss
    assert health.json()["status"] == "degraded"
    assert "has stopped" in health.json()["lost_workers"][0]
    assert_idle(thread)


def test_a_migration_whose_source_stops_ends_with_the_request_running_once():
    """The source stops right after the migration starts: the migration is aborted, the
    destination's reservation freed, and the request resumes there from its sent tokens."""
    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    with ServerThread(ServeConfig(backend="local", port=0)) as thread:
        url = thread.start(ready_timeout_s=300)
        reference = stream(url, "src-ref", 300)
        client, box = in_background(lambda: stream(url, "src-a", 300))

        def migrate_and_stop_source(controller: Any) -> Any:
            request = controller.request("src-a")
            source = request.worker if request is not None else None
            migration = migrate_after(50, "src-a")(controller)
            if migration is None:
                return None
            source.worker.stop()
            return migration

        when(thread, migrate_and_stop_source, "the migration to start")
        record = record_of(thread, "src-a")
        client.join(HANG_GUARD_S)
        assert record.outcome == "aborted" and "failed" in record.detail, record
        assert box["result"]["text"] == reference["text"]
        assert box["result"]["usage"]["completion_tokens"] == 300
        assert_idle(thread)


def test_a_client_that_leaves_mid_migration_cancels_it_at_both_workers(local_server):
    """The client's request is cancelled right after its migration starts (what the front end
    does when the client hangs up; the socket is really closed after): the migration ends
    cancelled, and neither the source nor the destination holds anything."""
    url, thread = local_server
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "temperature": 0.0,
        "max_tokens": 400,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"X-Request-Id": "leave-a"}
    with httpx.stream(
        "POST", f"{url}/v1/completions", json=body, headers=headers, timeout=HANG_GUARD_S
    ) as response:
        lines = response.iter_lines()
        for _ in range(60):
            next(lines)

        def migrate_and_cancel(controller: Any) -> Any:
            migration = migrate_after(20, "leave-a")(controller)
            if migration is not None:
                controller.abort("leave-a")
            return migration

        when(thread, migrate_and_cancel, "the migration to start")
    record = record_of(thread, "leave-a")
    assert record.outcome == "cancelled" and "client" in record.detail, record
    assert_idle(thread)


@pytest.fixture(scope="module")
def round_robin_server():
    """1 prefill + 2 decode workers of 420 KV tokens, round-robin placement, reservations
    that expire after 0.5 s."""
    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    config = ServeConfig(
        backend="local",
        port=0,
        decode_kv_tokens=420,
        placement="round-robin",
        migration_timeout_s=0.5,
    )
    with ServerThread(config) as thread:
        yield thread.start(ready_timeout_s=300), thread


def test_a_reservation_whose_copy_never_comes_is_freed_after_the_timeout(round_robin_server):
    from tandem.serve.messages import MigrationTask

    _, thread = round_robin_server
    controller = thread.server.front.controller
    dest = controller.decode[1]
    task = MigrationTask("never-copied", 10**6, "reserve", kv_tokens=50)
    assert thread.call(lambda: controller.send_control(dest, task, 50))

    def reserved(wanted: int) -> Callable[[Any], Any]:
        def check(controller: Any) -> Any:
            stats = [s for s in controller.worker_stats() if s.role == "decode"]
            return True if stats[1].kv_reserved_tokens == wanted else None

        return check

    when(thread, reserved(50), "the reservation")  # held...
    when(thread, reserved(0), "the reservation to expire")  # ...and freed, with no stage
    assert_idle(thread)


def test_moving_a_waiting_request_is_a_re_placement(round_robin_server):
    """A long request fills one worker; a short one goes to the other (round-robin); a
    200-token prompt then waits behind the long one for memory. Moving it is a re-placement:
    nothing copied, it starts at the other worker, and its text equals its text on an idle
    server."""
    url, thread = round_robin_server
    long_prompt = " ".join(["the cat sat on the mat"] * 33)
    reference = stream(url, "wait-ref", 40, prompt=long_prompt)
    first, first_box = in_background(lambda: stream(url, "wait-a", 380))
    when(thread, _both_past(["wait-a"], 250), "the long request past 250 tokens")
    stream(url, "wait-b", 2)  # worker 1's turn
    waiting, waiting_box = in_background(lambda: stream(url, "wait-c", 40, prompt=long_prompt))

    controller = thread.server.front.controller
    full = thread.call(lambda: controller.request("wait-a").decode_worker)

    def waits_where_the_long_one_runs(controller: Any) -> Any:
        request = controller.request("wait-c")
        if request is None or request.decode_worker != full:
            return None
        stats = [s for s in controller.worker_stats() if s.worker_id == full and s.role == "decode"]
        return True if any(row[0] == "wait-c" for row in stats[0].waiting) else None

    when(thread, waits_where_the_long_one_runs, "the prompt to wait behind the long request")
    assert thread.call(lambda: controller.migrate("wait-c", 1 - full)) is not None
    record = record_of(thread, "wait-c")
    waiting.join(HANG_GUARD_S)
    first.join(HANG_GUARD_S)
    assert record.outcome == "replaced" and record.num_bytes == 0, record
    assert waiting_box["result"]["text"] == reference["text"]
    assert first_box["result"]["usage"]["completion_tokens"] == 380
    assert_idle(thread)


def _placed(request_id: str) -> Callable[[Any], Any]:
    def placed(controller: Any) -> Any:
        request = controller.request(request_id)
        return True if request is not None and request.decode_worker is not None else None

    return placed


def _both_past(request_ids: list[str], tokens: int) -> Callable[[Any], Any]:
    def past(controller: Any) -> Any:
        requests = [controller.request(r) for r in request_ids]
        if any(r is None or r.decode_worker is None for r in requests):
            return None
        if len({r.decode_worker for r in requests}) != len(requests):
            raise AssertionError("least-kv placed both requests on one worker")
        return True if all(len(r.sent_token_ids) >= tokens for r in requests) else None

    return past


def test_a_rescheduler_migrates_live_without_ping_pong_and_every_request_finishes_once():
    """llumnix over two 600-token decode workers under round-robin placement that piles the
    long requests onto one worker: memory binds, the rescheduler moves requests live, and
    every request still ends once with its exact token count; afterwards nothing is held."""
    from concurrent.futures import ThreadPoolExecutor

    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    config = ServeConfig(
        backend="local",
        port=0,
        decode_kv_tokens=600,
        max_batch=8,
        placement="round-robin",
        rescheduler="llumnix",
        reschedule_interval_s=0.02,
    )
    # Even requests are long, odd ones short: round-robin sends every long one to worker 0.
    lengths = [300 if i % 2 == 0 else 30 for i in range(12)]
    with ServerThread(config) as thread:
        url = thread.start(ready_timeout_s=300)
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(
                pool.map(lambda il: stream(url, f"load-{il[0]}", il[1]), enumerate(lengths))
            )
        for length, result in zip(lengths, results, strict=True):
            assert result["reasons"] == ["length"]
            assert result["usage"]["completion_tokens"] == length
        controller = thread.server.front.controller
        records = thread.call(lambda: list(controller.migrations.records))
        migrated = [r for r in records if r.outcome == "migrated"]
        assert migrated, f"no live migration happened: {records}"
        moves: dict[str, list[Any]] = {}
        for r in migrated:
            moves.setdefault(r.request_id, []).append(r)
        # No ping-pong: a request moved back to the worker it left only after the load there
        # had time to change (several ticks), never bounced within a tick or two.
        for path in moves.values():
            for first, back in zip(path, path[1:], strict=False):
                started_back = back.ended_s - back.duration_s
                assert started_back - first.ended_s > 5 * config.reschedule_interval_s, path
        assert max(len(path) for path in moves.values()) <= 3, moves
        assert_idle(thread)


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"request_id": "x", "decode_worker": "a"}, 400, "decode_worker"),
        ({"request_id": "", "decode_worker": 0}, 400, "request_id"),
        ({"decode_worker": 0}, 400, "request_id"),
        ({"request_id": "x", "decode_worker": 0, "extra": 1}, 400, "extra"),
        ({"request_id": "not-in-flight", "decode_worker": 0}, 404, "request_id"),
    ],
)
def test_admin_migrate_refuses_bad_input_naming_the_field(local_server, body, status, param):
    url, _ = local_server
    answer = httpx.post(f"{url}/admin/migrate", json=body, timeout=10)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["param"] == param
    assert "File " not in error["message"] and ".py" not in error["message"]
