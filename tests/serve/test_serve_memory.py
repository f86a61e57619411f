"""A decode worker under a small KV capacity: requests wait for memory, overflow preempts and
recomputes (``control.admission``'s rules), and every output is still the greedy one."""

from __future__ import annotations

import concurrent.futures

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


@pytest.fixture(scope="module")
def predictive_server():
    from tandem.serve.server import ServeConfig, ServerThread

    thread = ServerThread(
        ServeConfig(
            backend="local",
            port=0,
            num_decode=1,
            decode_kv_tokens=260,
            prediction="oracle",
            admission="predictive",
        )
    )
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


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
