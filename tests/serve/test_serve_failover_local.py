"""A prefill worker that dies with requests queued: they are dispatched again (in-process
workers; the worker's loop really stops, its next poll says it is gone)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

torch = pytest.importorskip("torch")

MODEL = "stories260K"
HANG_GUARD_S = 60.0


def complete(url: str, prompt: str) -> dict:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 24, "temperature": 0.0}
    answer = httpx.post(f"{url}/v1/completions", json=body, timeout=HANG_GUARD_S)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_requests_queued_at_a_prefill_worker_that_dies_are_dispatched_again():
    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    prompts = [" ".join([f"story {i} about a cat"] * 25) for i in range(16)]
    config = ServeConfig(backend="local", port=0, num_prefill=2, max_prefill_batch=1)
    with ServerThread(config) as thread:
        url = thread.start(ready_timeout_s=300)
        reference = [complete(url, p) for p in prompts]
        controller = thread.server.front.controller
        victim = controller.prefill[0]

        def stop_when_busy() -> bool:
            stats = victim.worker.stats()
            if stats.num_waiting < 1:  # requests it holds: queued or being prefilled
                return False
            victim.worker.stop()
            return True

        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(complete, url, p) for p in prompts]
            deadline = time.monotonic() + HANG_GUARD_S
            while not thread.call(stop_when_busy):
                assert time.monotonic() < deadline, "prefill worker 0 never had a queue"
                time.sleep(0.001)
            answers = [f.result(HANG_GUARD_S) for f in futures]
        for answer, alone in zip(answers, reference, strict=True):
            assert answer["choices"][0]["text"] == alone["choices"][0]["text"]
            assert answer["usage"] == alone["usage"]
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "degraded" and "prefill 0" in health["lost_workers"][0]
