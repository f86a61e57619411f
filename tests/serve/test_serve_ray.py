"""``tandem serve`` on a real two-node Ray cluster: prefill on one node, decode on the other.

The last test kills a decode worker's process (SIGKILL): its request resumes on the other
decode worker with no token lost or repeated, and Ray restarts the worker, which the
Controller loads again and admits back. It runs last.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

MODEL = "tiny-stories"  # --served-model-name
PROMPT = "Once upon a time"


def test_prefill_and_decode_workers_run_on_different_nodes(ray_server):
    health = httpx.get(f"{ray_server}/health", timeout=10).json()
    nodes = {w["role"]: w["node"] for w in health["workers"]}
    assert nodes == {"prefill": "127.0.0.2", "decode": "127.0.0.3"}


def test_greedy_output_through_ray_equals_the_runner(ray_server, stories):
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    body = httpx.post(
        f"{ray_server}/v1/completions",
        timeout=60,
        json={"model": MODEL, "prompt": PROMPT, "max_tokens": 64, "temperature": 0},
    ).json()
    done = ModelRunner(stories).generate(
        [stories.encode(PROMPT)], SamplingParams(temperature=0.0, max_new_tokens=64)
    )[0]
    assert body["choices"][0]["text"] == stories.decode(done.output_token_ids)
    assert body["usage"]["completion_tokens"] == done.num_output_tokens


def _stream_text(url: str, seed: int) -> tuple[str, int]:
    text, chunks = "", 0
    with httpx.stream(
        "POST",
        f"{url}/v1/completions",
        timeout=120,
        json={
            "model": MODEL,
            "prompt": PROMPT,
            "max_tokens": 50,
            "seed": seed,
            "stream": True,
            "ignore_eos": True,
        },
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                text += json.loads(line[6:])["choices"][0]["text"]
                chunks += 1
    return text, chunks


def test_concurrent_streams_all_complete_and_match_their_non_stream_text(ray_server):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        streamed = list(pool.map(lambda s: _stream_text(ray_server, s), range(16)))
    for seed, (text, chunks) in enumerate(streamed):
        whole = httpx.post(
            f"{ray_server}/v1/completions",
            timeout=60,
            json={
                "model": MODEL,
                "prompt": PROMPT,
                "max_tokens": 50,
                "seed": seed,
                "ignore_eos": True,
            },
        ).json()
        assert chunks >= 1
        assert text == whole["choices"][0]["text"]


def test_openai_chat_with_a_template_file_streams_through_ray(ray_server):
    client = openai.OpenAI(base_url=f"{ray_server}/v1", api_key="x", timeout=60, max_retries=0)
    messages = [{"role": "user", "content": "Tell me a story"}]
    whole = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=20, temperature=0
    )
    assert whole.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=20, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == whole.choices[0].message.content
    assert whole.usage is not None and whole.usage.completion_tokens <= 20


def test_kv_hand_offs_are_counted_in_metrics(ray_server):
    text = httpx.get(f"{ray_server}/metrics", timeout=10).text
    received = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tandem:kv_transfer_bytes_total{") and 'role="decode"' in line
    ]
    assert received and sum(received) > 0


def decode_health(url: str) -> list[dict]:
    """The workers /health lists (it must be healthy)."""
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, health.text
    return health.json()["workers"]


def _decode_pid_serving(url: str) -> int:
    """The pid of the decode worker with a running request (from /metrics and /health)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            running = line.startswith("tandem:num_requests_running{") and 'role="decode"' in line
            if running and float(line.rsplit(" ", 1)[1]) >= 1:
                instance = int(line.split('instance="')[1].split('"')[0])
                workers = httpx.get(f"{url}/health", timeout=10).json()["workers"]
                return next(
                    w["pid"] for w in workers if w["role"] == "decode" and w["id"] == instance
                )
        time.sleep(0.05)
    raise AssertionError("no decode worker ever ran the request")


def _stream_migrating(
    url: str,
    request_id: str,
    params: dict,
    migrate: bool,
    max_tokens: int = 400,
    on_moved: Callable[[int], None] | None = None,
) -> tuple[str, Any]:
    """A stream's text and usage; with ``migrate``, POST /admin/migrate moves it to the other
    decode actor once 60 characters have arrived (then ``on_moved(destination)``)."""
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        **params,
    }
    text, usage, moved = "", None, not migrate
    headers = {"X-Request-Id": request_id}
    with httpx.stream(
        "POST", f"{url}/v1/completions", json=body, headers=headers, timeout=120
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            usage = event.get("usage") or usage
            for choice in event["choices"]:
                text += choice["text"]
            if not moved and len(text) > 60:
                for worker in (0, 1):  # the other worker answers 200; its own one 409
                    answer = httpx.post(
                        f"{url}/admin/migrate",
                        json={"request_id": request_id, "decode_worker": worker},
                        timeout=10,
                    )
                    if answer.status_code == 200:
                        moved = True
                        if on_moved is not None:
                            on_moved(worker)
                        break
                    assert answer.status_code == 409, answer.text
    assert moved
    return text, usage


@pytest.mark.parametrize(
    "params", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 5}], ids=["greedy", "seeded"]
)
def test_a_forced_live_migration_between_ray_actors_keeps_the_stream_exact(ray_server, params):
    """POST /admin/migrate moves a streaming request from one decode actor to the other while
    the client reads; the text equals the same request's without migration."""
    name = "greedy" if params["temperature"] == 0 else "seeded"
    before = _migrations(ray_server)
    reference, _ = _stream_migrating(ray_server, f"ray-ref-{name}", params, migrate=False)
    text, usage = _stream_migrating(ray_server, f"ray-mig-{name}", params, migrate=True)
    assert text == reference
    assert usage is not None and usage["completion_tokens"] == 400
    assert _migrations(ray_server) == before + 1
    assert "tandem:migration_bytes_total" in httpx.get(f"{ray_server}/metrics", timeout=10).text


def test_a_migration_whose_destination_actor_is_killed_leaves_the_request_running_once(
    ray_server, stories
):
    """SIGKILL of the destination's process right after a migration starts (mid-copy, or just
    after it committed): either way the request runs exactly once and its text is exact; the
    killed actor restarts and is admitted back."""
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    url = ray_server
    pids = {w["id"]: w["pid"] for w in decode_health(url) if w["role"] == "decode"}
    killed: list[int] = []

    def kill_destination(worker: int) -> None:
        killed.append(pids[worker])
        os.kill(pids[worker], signal.SIGKILL)

    text, _ = _stream_migrating(
        url, "ray-kill-dest", {"temperature": 0}, True, 300, on_moved=kill_destination
    )
    assert killed
    alone = ModelRunner(stories).generate(
        [stories.encode(PROMPT)],
        SamplingParams(temperature=0.0, max_new_tokens=300, ignore_eos=True),
    )[0]
    assert text == stories.decode(alone.output_token_ids)
    deadline = time.monotonic() + 120  # back to two decode workers before the next test
    while httpx.get(f"{url}/health", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the killed destination never came back"
        time.sleep(0.5)


def _migrations(url: str) -> float:
    """Migrations counted as migrated in /metrics (0 before the first)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("tandem:migrations_total{") and 'outcome="migrated"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_killed_decode_worker_loses_no_token_and_repeats_none(ray_server, stories):
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    url = ray_server
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": 480,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stream_interval_ms": 0,
    }
    restarts_before = sum(w["restarts"] for w in decode_health(url) if w["role"] == "decode")
    text, usage, killed = "", None, False
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event["choices"]:
                text += choice["text"]
            if not killed and len(text) > 40:
                killed_pid = _decode_pid_serving(url)
                os.kill(killed_pid, signal.SIGKILL)
                killed = True
    assert killed
    alone = ModelRunner(stories).generate(
        [stories.encode(PROMPT)],
        SamplingParams(temperature=0.0, max_new_tokens=480, ignore_eos=True),
    )[0]
    assert text == stories.decode(alone.output_token_ids)
    assert usage is not None and usage["completion_tokens"] == 480
    # Ray restarts the actor; the Controller loads it again and admits it back.
    deadline = time.monotonic() + 120
    health = httpx.get(f"{url}/health", timeout=10)
    while health.status_code != 200 and time.monotonic() < deadline:
        assert health.json()["status"] == "degraded"
        time.sleep(0.5)
        health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, health.text
    decode = [w for w in health.json()["workers"] if w["role"] == "decode"]
    assert sum(w["restarts"] for w in decode) == restarts_before + 1
    assert killed_pid not in {w["pid"] for w in decode}
    for _ in range(4):  # both decode workers serve new requests (least-kv alternates)
        after = httpx.post(
            f"{url}/v1/completions",
            timeout=60,
            json={"model": MODEL, "prompt": PROMPT, "max_tokens": 8},
        ).json()
        assert after["usage"]["completion_tokens"] == 8

    # The only prefill worker dies: requests sent meanwhile wait for its restart, then run.
    expected = stories.decode(alone.output_token_ids[:16])
    prefill_pid = next(w["pid"] for w in decode_health(url) if w["role"] == "prefill")
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 16, "temperature": 0}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        os.kill(prefill_pid, signal.SIGKILL)
        racing = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=120)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health", timeout=10).status_code == 200:
            assert time.monotonic() < deadline, "the Controller never noticed the dead prefill"
            time.sleep(0.05)
        parked = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=120)
        for future in (racing, parked):
            answer = future.result(150)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["text"] == expected

    # Every decode worker dies: a hand-off made meanwhile waits for a restart, then decodes.
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/health", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the prefill worker never came back"
        time.sleep(0.5)
    decode_pids = [w["pid"] for w in decode_health(url) if w["role"] == "decode"]
    for pid in decode_pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/health", timeout=10).status_code == 200:
        assert time.monotonic() < deadline, "the Controller never noticed the dead decode workers"
        time.sleep(0.05)
    answer = httpx.post(f"{url}/v1/completions", json=body, timeout=150)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"] == expected
