"""A client that closes its socket cancels its request wherever it is, and its KV is freed.

Every case is a real disconnect (a raw TCP socket closed mid-request) against an in-process
server (1 prefill + 1 decode worker). Where the request must be caught at a given place, the
worker holding that place is kept busy by a step gate: it takes a step only when the test
hands it a permit, so the test knows exactly how many steps ran. Everything is asserted by
counting (the Controller's requests in flight, the workers' queues, batch and KV tokens, the
/metrics gauges), never by how fast the machine is; waits only guard against a hang.

Places a request can be when its client goes (docs/serving.md, "The life of a request"):

- the prefill worker's inbox, or its runner's queue behind a prompt being prefilled;
- the hand-off: prefilled, placed, its ``DecodeTask`` not yet taken by the decode worker;
- the decode worker's queue, waiting for KV memory;
- the decode batch (streaming: ``test_serve_local.py``; non-streaming: here, where nothing is
  sent before the end, so only listening for the disconnect can notice it).

The last test covers an abort that reaches a worker after it is done with the request, while
that event is on its way to the Controller: nothing may stay behind at the worker.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

MODEL = "stories260K"
KV_CAPACITY = 160  # decode worker KV tokens: a 100-token prompt leaves no room for a 60-token one
LONG_PROMPT = [1] + [(7 * i) % 500 + 10 for i in range(99)]  # 100 token ids
MEDIUM_PROMPT = LONG_PROMPT[:60]
SHORT = LONG_PROMPT[:5]
HANG_GUARD_S = 30.0  # no wait below depends on speed: this only stops a hung test


@pytest.fixture(scope="module")
def server():
    """(url, ServerThread): one prefill worker that prefills one prompt per step, one decode
    worker holding ``KV_CAPACITY`` tokens."""
    import torch

    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    config = ServeConfig(
        backend="local",
        port=0,
        num_prefill=1,
        num_decode=1,
        max_prefill_batch=1,
        decode_kv_tokens=KV_CAPACITY,
        stream_interval_s=0.0,
    )
    thread = ServerThread(config)
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


# -- helpers --------------------------------------------------------------------------------


class StepGate:
    """The worker takes a step only with a permit (``allow``); ``entered`` counts the steps it
    has begun (each waits for its permit before doing anything)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.entered = 0
        self._permits = threading.Semaphore(0)
        self._open = False
        self._cond = threading.Condition()
        step = worker._step

        def gated_step() -> Any:
            with self._cond:
                self.entered += 1
                self._cond.notify_all()
            if not self._open:
                self._permits.acquire(timeout=HANG_GUARD_S)
            return step()

        worker._step = gated_step

    def allow(self, steps: int = 1) -> None:
        self._permits.release(steps)

    def wait_entered(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.entered >= count, HANG_GUARD_S), (
                f"the worker began {self.entered} steps, expected {count}"
            )

    def open(self) -> None:
        self._open = True
        self._permits.release(1000)

    def remove(self) -> None:
        self.open()
        del self.worker._step


@contextlib.contextmanager
def gated(worker: Any) -> Iterator[StepGate]:
    gate = StepGate(worker)
    try:
        yield gate
    finally:
        gate.remove()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def open_request(url: str, request_id: str, *, stream: bool = True, **body: Any) -> socket.socket:
    """A raw HTTP/1.1 completion request on its own socket (closed by the caller: the
    disconnect under test). A streaming request returns once the response headers arrived."""
    parts = urlsplit(url)
    payload = json.dumps({"model": MODEL, "stream": stream, **body}).encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=HANG_GUARD_S)
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    if stream:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the connection before answering"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def hang_up(sock: socket.socket) -> None:
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextlib.contextmanager
def streaming(url: str, request_id: str, **body: Any) -> Iterator[httpx.Response]:
    """A streaming request that the test reads to its end (headers are in on entry)."""
    with httpx.stream(
        "POST",
        f"{url}/v1/completions",
        json={"model": MODEL, "stream": True, "ignore_eos": True, **body},
        headers={"X-Request-Id": request_id},
        timeout=HANG_GUARD_S,
    ) as response:
        assert response.status_code == 200
        yield response


def finish_reason(response: httpx.Response) -> str | None:
    """Read a stream to [DONE]; its finish reason."""
    reason = None
    for line in response.iter_lines():
        data = line.removeprefix("data: ")
        if not line.startswith("data: ") or data == "[DONE]":
            continue
        event = json.loads(data)
        assert "error" not in event, event
        for choice in event["choices"]:
            reason = choice.get("finish_reason") or reason
    return reason


def queued_ids(worker: Any) -> set[str]:
    """Ids a worker holds anywhere: inbox, prefill queue, decode queue or batch."""
    with worker._cond:
        ids = {task.request_id for task in worker._inbox}
    ids |= set(getattr(worker, "_seq_by_request", {}))
    ids |= {w.request_id for w in getattr(worker, "_waiting", ())}
    ids |= set(getattr(worker, "_running", {}))
    return ids


def gauges(url: str) -> dict[str, float]:
    """The /metrics gauges that say whether anything is queued, running or holds KV."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    names = ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(f"tandem:{name}{{"):
                labels, value = line.rsplit(" ", 1)
                out[labels] = float(value)
    assert len(out) == 5, out  # running and waiting of both workers, KV of the decode worker
    return out


def assert_idle(url: str, thread: Any) -> None:
    """Nothing in flight, queued, running or holding KV, in the Controller, the workers and
    /metrics; no abort left pending in a worker."""
    controller = thread.server.front.controller
    prefill, decode = controller.prefill[0].worker, controller.decode[0].worker
    wait_until(lambda: controller.num_in_flight == 0, "the Controller has no request in flight")
    for worker in (prefill, decode):
        wait_until(lambda w=worker: not queued_ids(w), f"{worker.name} holds no request")
        wait_until(
            lambda w=worker: w.stats().num_waiting == 0 and w.stats().num_running == 0,
            f"{worker.name}'s stats show no request",
        )
        assert worker.runner.num_waiting == 0 and worker.runner.num_running == 0
        assert not worker._forgotten, f"{worker.name} still waits for aborted tasks"
    assert decode.stats().kv_used_tokens == 0
    assert decode.stats().kv_waiting_tokens == 0
    wait_until(
        lambda: all(s.num_waiting == s.num_running == s.kv_used_tokens == 0
                    for s in controller.worker_stats()),
        "the Controller's view of every worker is idle",
    )  # fmt: skip
    wait_until(lambda: not any(gauges(url).values()), "every /metrics gauge reads 0")


def prefilled_prompts(thread: Any) -> int:
    return int(thread.server.front.controller.prefill[0].worker.stats().prompt_tokens_total)


# -- the cases ------------------------------------------------------------------------------


def test_a_request_queued_at_a_busy_prefill_worker_is_never_prefilled(server):
    url, thread = server
    controller = thread.server.front.controller
    prefill = controller.prefill[0].worker
    before = prefilled_prompts(thread)
    with gated(prefill) as gate, contextlib.ExitStack() as stack:
        # B is being prefilled (its step waits for a permit); C and A arrive meanwhile.
        b = stack.enter_context(streaming(url, "cancel-a-b", prompt=SHORT, max_tokens=4))
        gate.wait_entered(1)
        c = stack.enter_context(streaming(url, "cancel-a-c", prompt=SHORT, max_tokens=4))
        a = open_request(url, "cancel-a-a", prompt=LONG_PROMPT, max_tokens=8)
        wait_until(lambda: {"cancel-a-c", "cancel-a-a"} <= queued_ids(prefill), "C, A queued")
        gate.allow(1)  # B's step; then C and A join the runner's queue, one prompt per step
        gate.wait_entered(2)
        assert {"cancel-a-c", "cancel-a-a"} <= set(prefill._seq_by_request)
        # A2 arrives while C's step waits: it stays in the worker's inbox.
        a2 = open_request(url, "cancel-a-a2", prompt=LONG_PROMPT, max_tokens=8)
        wait_until(lambda: "cancel-a-a2" in queued_ids(prefill), "A2 in the inbox")
        hang_up(a)
        hang_up(a2)
        wait_until(
            lambda: (
                not controller.is_active("cancel-a-a") and not controller.is_active("cancel-a-a2")
            ),
            "the Controller dropped A and A2",
        )
        gate.allow(1)  # C's step; the aborts apply before any other step
        wait_until(lambda: not queued_ids(prefill), "the prefill worker holds nothing")
        assert gate.entered == 2  # no step for A or A2: they left the queue unprefilled
        assert finish_reason(b) == "length"
        assert finish_reason(c) == "length"
    assert prefilled_prompts(thread) - before == 2 * len(SHORT)  # B's and C's prompts only
    assert_idle(url, thread)


def test_a_request_in_the_hand_off_is_dropped_before_the_decode_worker_takes_it(server):
    url, thread = server
    controller = thread.server.front.controller
    decode = controller.decode[0].worker
    transferred = decode.stats().kv_transfer_bytes_total
    with gated(decode) as gate, streaming(url, "cancel-b-f", prompt=SHORT, max_tokens=20) as f:
        gate.wait_entered(1)  # the step that would let F join waits for a permit
        w = open_request(url, "cancel-b-w", prompt=SHORT, max_tokens=8)
        # W is prefilled and placed: its DecodeTask waits in the busy worker's inbox.
        wait_until(lambda: "cancel-b-w" in queued_ids(decode), "W handed to decode")
        with decode._cond:
            assert [t.request_id for t in decode._inbox] == ["cancel-b-w"]
        hang_up(w)
        wait_until(lambda: not controller.is_active("cancel-b-w"), "the Controller drops W")
        gate.allow(1)
        gate.wait_entered(2)  # the next step began: the abort and W's task were applied
        assert queued_ids(decode) == {"cancel-b-f"}
        assert not decode._forgotten
        gate.open()
        assert finish_reason(f) == "length"
    # Only F's hand-off was fetched (a hand-off carries the prompt's KV): W's never was.
    assert decode.stats().kv_transfer_bytes_total - transferred == (
        len(SHORT) * decode.kv_bytes_per_token()
    )
    assert_idle(url, thread)


def test_a_request_waiting_for_decode_memory_leaves_the_queue(server):
    url, thread = server
    controller = thread.server.front.controller
    decode = controller.decode[0].worker
    transferred = decode.stats().kv_transfer_bytes_total
    # F holds 101 of the 160 KV tokens and grows; W's 61 never fit beside it.
    f_stream = streaming(url, "cancel-c-f", prompt=LONG_PROMPT, max_tokens=40)
    with gated(decode) as gate, f_stream as f:
        gate.wait_entered(1)
        w = open_request(url, "cancel-c-w", prompt=MEDIUM_PROMPT, max_tokens=8)
        wait_until(lambda: "cancel-c-w" in queued_ids(decode), "W handed to decode")
        gate.allow(1)
        gate.wait_entered(2)
        assert [x.request_id for x in decode._waiting] == ["cancel-c-w"]
        gate.allow(1)  # a step with W refused for memory: F alone runs
        gate.wait_entered(3)
        assert [x.request_id for x in decode._waiting] == ["cancel-c-w"]
        assert list(decode._running) == ["cancel-c-f"]
        wait_until(
            lambda: (
                decode.stats().num_waiting == 1
                and decode.stats().kv_waiting_tokens == len(MEDIUM_PROMPT) + 1
            ),
            "the stats show W waiting with its KV",
        )
        hang_up(w)
        wait_until(lambda: not controller.is_active("cancel-c-w"), "the Controller drops W")
        gate.allow(1)  # step 3 ends; the abort applies before step 4
        gate.wait_entered(4)
        assert not decode._waiting
        assert list(decode._running) == ["cancel-c-f"]
        gate.allow(1)  # step 4 ends: its stats are out before step 5 begins
        gate.wait_entered(5)
        stats = decode.stats()
        assert (stats.num_waiting, stats.kv_waiting_tokens, stats.num_running) == (0, 0, 1)
        gate.open()
        assert finish_reason(f) == "length"
    # One hand-off fetched (F's); W never joined.
    assert decode.stats().kv_transfer_bytes_total - transferred == (
        len(LONG_PROMPT) * decode.kv_bytes_per_token()
    )
    assert_idle(url, thread)


def test_a_non_streaming_request_is_cancelled_when_its_client_goes(server):
    url, thread = server
    controller = thread.server.front.controller
    decode = controller.decode[0].worker
    with gated(decode) as gate:
        sock = open_request(url, "cancel-d", stream=False, prompt=SHORT, max_tokens=100,
                            ignore_eos=True)  # fmt: skip
        gate.wait_entered(1)
        gate.allow(1)  # it joins the decode batch and takes one step
        gate.wait_entered(2)
        assert list(decode._running) == ["cancel-d"]
        hang_up(sock)
        # No step runs meanwhile: only the disconnect can end it.
        wait_until(lambda: not controller.is_active("cancel-d"), "the Controller drops it")
        gate.allow(1)  # the step under way ends; the abort applies before any other
        wait_until(lambda: not decode._running, "the decode batch is empty")
        assert gate.entered == 2
    assert_idle(url, thread)


def test_a_request_cancelled_while_its_prefill_event_is_in_transit_leaves_nothing_behind(server):
    url, thread = server
    controller = thread.server.front.controller
    prefill = controller.prefill[0].worker
    poll = prefill.poll
    entered, held, release = threading.Event(), threading.Event(), threading.Event()

    def holding_poll(timeout_s: float, linger_s: float = 0.0) -> Any:
        entered.set()
        update = poll(timeout_s, linger_s)
        if update.events and not release.is_set():
            held.set()  # prefilled: the event waits here, on its way to the Controller
            release.wait(HANG_GUARD_S)
        return update

    prefill.poll = holding_poll
    try:
        assert entered.wait(HANG_GUARD_S)  # every poll from now on goes through the hold
        sock = open_request(url, "cancel-e", prompt=SHORT, max_tokens=8, ignore_eos=True)
        assert held.wait(HANG_GUARD_S)
        hang_up(sock)
        wait_until(lambda: not controller.is_active("cancel-e"), "the Controller drops it")
    finally:
        release.set()
        del prefill.poll
    assert_idle(url, thread)
