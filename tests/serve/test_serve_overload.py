"""Bounded admission (``--max-waiting-requests``): past the limit a request gets 429 with
``Retry-After`` at once, never a place in an endless queue.

Counted, not timed: the one decode worker is stalled (its steps wait on a gate), so every
admitted request stays in flight, exactly, until the test opens the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from tandem.errors import ConfigError

MODEL = "stories260K"
MAX_BATCH, WAITING = 2, 2
LIMIT = MAX_BATCH + WAITING  # one decode worker: its batch slots plus the waiting allowance
BODY = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 12, "ignore_eos": True}


@pytest.fixture(scope="module")
def limited_server():
    from tandem.serve.server import ServeConfig, ServerThread

    config = ServeConfig(
        backend="local",
        port=0,
        num_decode=1,
        max_batch=MAX_BATCH,
        max_waiting_requests=WAITING,
    )
    thread = ServerThread(config)
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


@contextlib.contextmanager
def stalled_decode(thread) -> Iterator[threading.Event]:
    """The decode worker takes no step until the yielded gate is set (or the block ends)."""
    worker = thread.server.front.controller.decode[0].worker
    gate = threading.Event()
    step = worker._step

    def gated_step():
        gate.wait(60)
        return step()

    worker._step = gated_step
    try:
        yield gate
    finally:
        gate.set()
        del worker._step


def rejected_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("tandem:num_requests_rejected_total{") and 'reason="overloaded"' in line
    )
    return float(line.rsplit(" ", 1)[1])


def read_to_done(response: httpx.Response) -> list[str]:
    return [line for line in response.iter_lines() if line.startswith("data: ")]


def test_the_request_past_the_limit_gets_429_with_retry_after_and_room_returns(limited_server):
    url, thread = limited_server
    controller = thread.server.front.controller
    before = rejected_count(url)
    with stalled_decode(thread) as gate, contextlib.ExitStack() as streams:
        held = [
            streams.enter_context(
                httpx.stream(
                    "POST", f"{url}/v1/completions", json={**BODY, "stream": True}, timeout=60
                )
            )
            for _ in range(LIMIT)
        ]
        assert [r.status_code for r in held] == [200] * LIMIT
        assert controller.num_in_flight == LIMIT
        refused = httpx.post(f"{url}/v1/completions", json=BODY, timeout=10)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["type"] == "RateLimitError" and error["code"] == 429
        assert "--max-waiting-requests" in error["message"]
        assert rejected_count(url) == before + 1
        gate.set()
        for response in held:
            assert read_to_done(response)[-1] == "data: [DONE]"
    assert controller.num_in_flight == 0
    after = httpx.post(f"{url}/v1/completions", json=BODY, timeout=60)
    assert after.status_code == 200
    assert after.json()["usage"]["completion_tokens"] == BODY["max_tokens"]


def test_a_flood_admits_exactly_the_limit_and_refuses_the_rest(limited_server):
    url, thread = limited_server
    controller = thread.server.front.controller
    num_sent = 3 * LIMIT

    async def flood(gate: threading.Event) -> tuple[list[int], list[list[str]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            requests = [
                client.build_request("POST", f"{url}/v1/completions", json={**BODY, "stream": True})
                for _ in range(num_sent)
            ]
            responses = await asyncio.gather(*(client.send(r, stream=True) for r in requests))
            statuses = [r.status_code for r in responses]
            in_flight = controller.num_in_flight
            waiting = [s.num_waiting for s in controller.worker_stats() if s.role == "decode"]
            assert in_flight == LIMIT and sum(waiting) <= LIMIT
            gate.set()
            bodies = []
            for response in responses:
                bodies.append([line async for line in response.aiter_lines() if line])
                await response.aclose()
            return statuses, bodies

    with stalled_decode(thread) as gate:
        statuses, bodies = asyncio.run(flood(gate))
    assert sorted(statuses) == [200] * LIMIT + [429] * (num_sent - LIMIT)
    for status, lines in zip(statuses, bodies, strict=True):
        if status == 200:
            assert lines[-1] == "data: [DONE]"
        else:
            assert '"RateLimitError"' in lines[0]
    assert controller.num_in_flight == 0


def test_the_default_limit_is_four_waiting_requests_per_batch_slot():
    from tandem.serve.server import ServeConfig

    assert ServeConfig(num_decode=2, max_batch=64).max_requests_in_flight == 128 + 4 * 128
    assert (
        ServeConfig(num_decode=1, max_batch=8, max_waiting_requests=0).max_requests_in_flight == 8
    )
    with pytest.raises(ConfigError, match="--max-waiting-requests"):
        ServeConfig(max_waiting_requests=-1)
