"""A decode worker under a small KV capacity: requests wait for memory, overflow preempts and
recomputes (``control.admission``'s rules), and every output is still the greedy one."""

from __future__ import annotations

import concurrent.futures
import json
import math
import threading

import httpx
import pytest

PROMPTS = ["Once upon a time", "The cat", "Tom and Sue went", "A little dog"]


def assert_concurrent_outputs_are_greedy(url: str, stories) -> None:
    """PROMPTS sent at once, 120 forced tokens each: every text equals the runner's alone."""
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    def ask(prompt: str) -> str:
        body = {
            "model": "stories260K",
            "prompt": prompt,
            "max_tokens": 120,
            "temperature": 0,
            "ignore_eos": True,
        }
        reply = httpx.post(f"{url}/v1/completions", timeout=120, json=body).json()
        return reply["choices"][0]["text"]

    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        served = list(pool.map(ask, PROMPTS))
    params = SamplingParams(temperature=0.0, max_new_tokens=120, ignore_eos=True)
    for prompt, text in zip(PROMPTS, served, strict=True):
        alone = ModelRunner(stories).generate([stories.encode(prompt)], params)[0]
        assert text == stories.decode(alone.output_token_ids), prompt


@pytest.fixture(scope="module")
def small_server():
    from tandem.serve.server import ServeConfig, ServerThread

    thread = ServerThread(ServeConfig(backend="local", port=0, num_decode=1, decode_kv_tokens=260))
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


def test_overflow_preempts_and_recomputes_without_changing_greedy_output(small_server, stories):
    url, thread = small_server

    assert_concurrent_outputs_are_greedy(url, stories)
    stats = [s for s in thread.server.front.controller.worker_stats() if s.role == "decode"]
    assert stats[0].num_preemptions > 0  # 4 x ~125 tokens cannot share 260
    assert stats[0].kv_used_tokens == 0


def test_a_request_larger_than_a_decode_worker_is_refused_up_front(small_server):
    url, _ = small_server
    response = httpx.post(
        f"{url}/v1/completions",
        timeout=30,
        json={"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 300},
    )
    assert response.status_code == 400
    assert "--decode-kv-tokens" in response.json()["error"]["message"]


def _predictive(max_wait_s: float):
    from tandem.serve.server import ServeConfig, ServerThread

    thread = ServerThread(
        ServeConfig(
            backend="local",
            port=0,
            num_decode=1,
            decode_kv_tokens=260,
            prediction="oracle",
            admission="predictive",
            admission_max_wait_s=max_wait_s,
        )
    )
    url = thread.start(ready_timeout_s=300)
    return url, thread


@pytest.fixture(scope="module")
def predictive_server():
    """Predictive admission with no bound on how long predictions may hold a request."""
    url, thread = _predictive(math.inf)
    yield url, thread
    thread.stop()


@pytest.fixture(scope="module")
def bounded_server():
    """Predictive admission that holds a request back 0.05 s at most."""
    url, thread = _predictive(0.05)
    yield url, thread
    thread.stop()


def _a_then_b(url: str, stories) -> None:
    """A asks for 200 forced tokens; once it has streamed 20 chunks, B (the same) is sent. B's
    prompt fits the 260-token worker at once, but with oracle predictions the pair's projected
    peak (about 211 tokens plus A's remaining length) fits only once A has 49 tokens or fewer
    left. Both texts must be the greedy one."""
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    body = {
        "model": "stories260K",
        "prompt": "Once upon a time",
        "max_tokens": 200,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_interval_ms": 0,
    }
    started = threading.Event()

    def stream() -> str:
        text, chunks = "", 0
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["text"]
                    chunks += 1
                    if chunks == 20:
                        started.set()
        return text

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(stream)
        assert started.wait(60)
        b = pool.submit(stream)
        texts = [a.result(120), b.result(120)]
    params = SamplingParams(temperature=0.0, max_new_tokens=200, ignore_eos=True)
    alone = ModelRunner(stories).generate([stories.encode("Once upon a time")], params)[0]
    assert texts == [stories.decode(alone.output_token_ids)] * 2


def _preemptions(thread) -> int:
    stats = thread.server.front.controller.worker_stats()
    return sum(s.num_preemptions for s in stats if s.role == "decode")


def test_predictive_admission_holds_a_request_back_for_the_bound_only(
    predictive_server, bounded_server, stories
):
    """``--admission-max-wait-s`` (``control.admission.admission_hold_until``, the simulator's
    rule) in the live worker: unbounded, B waits until the pair's projected peak fits and
    nothing is preempted; with a 0.05 s bound B joins long before that, the batch outgrows the
    memory and the worker preempts (and recomputes: the texts are still the greedy ones)."""
    for (url, thread), expect_preemption in ((predictive_server, False), (bounded_server, True)):
        before = _preemptions(thread)
        _a_then_b(url, stories)
        assert (_preemptions(thread) > before) == expect_preemption


def test_predictive_admission_with_oracle_predictions_avoids_every_preemption(
    predictive_server, stories
):
    url, thread = predictive_server

    assert_concurrent_outputs_are_greedy(url, stories)
    decode = [s for s in thread.server.front.controller.worker_stats() if s.role == "decode"]
    assert decode[0].num_preemptions == 0  # the same load preempts under greedy admission


def test_oracle_predictions_reach_the_policies_views(predictive_server):
    import time

    url, thread = predictive_server
    controller = thread.server.front.controller
    body = {
        "model": "stories260K",
        "prompt": "Once upon a time",
        "max_tokens": 200,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(30):
            next(lines)
        deadline = time.monotonic() + 10
        rows = []
        while not rows and time.monotonic() < deadline:
            rows = [r for v in controller.decode_views() for r in v.running()]
        row = rows[0]
        assert row.predicted_remaining_tokens == 200 - row.tokens_generated
        view = controller.decode_views()[0]
        assert view.projected_kv_tokens(10) == view.kv_used_tokens + 10
