"""``tandem serve`` with in-process workers, through real HTTP (httpx, openai) on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest

MODEL = "stories260K"
PROMPT = "Once upon a time"


def complete(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json={"model": MODEL, **body}, timeout=60)


def stream_events(url: str, path: str = "/v1/completions", **body) -> list[dict | str]:
    events: list[dict | str] = []
    with httpx.stream(
        "POST", f"{url}{path}", json={"model": MODEL, "stream": True, **body}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


@contextmanager
def long_stream(url: str, max_tokens: int) -> Iterator[Iterator[str]]:
    """The lines of a streaming request forced to ``max_tokens`` tokens (closed on exit)."""
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
        yield response.iter_lines()


def runner_greedy(stories, prompt: str, max_tokens: int, **params) -> str:
    from tandem.engine.runner import ModelRunner
    from tandem.engine.sampling import SamplingParams

    ids = stories.encode(prompt)
    done = ModelRunner(stories).generate(
        [ids], SamplingParams(temperature=0.0, max_new_tokens=max_tokens, **params)
    )[0]
    return stories.decode(done.output_token_ids)


def test_health_and_models_describe_the_served_model(local_server):
    url, _ = local_server
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok"
    assert sorted(w["role"] for w in health["workers"]) == ["decode", "decode", "prefill"]
    card = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
    assert card["id"] == MODEL and card["max_model_len"] == 512


def test_greedy_output_equals_the_runner_and_transformers_generate(local_server, stories):
    url, _ = local_server
    body = complete(url, prompt=PROMPT, max_tokens=48, temperature=0).json()
    text = body["choices"][0]["text"]
    assert text == runner_greedy(stories, PROMPT, 48)
    ids = torch_tensor([stories.encode(PROMPT)])
    generated = stories.model.generate(
        ids,
        max_new_tokens=48,
        do_sample=False,
        eos_token_id=list(stories.eos_token_ids),
        pad_token_id=stories.pad_token_id,
    )
    assert text == stories.decode(generated[0, ids.shape[1] :].tolist())


def torch_tensor(rows):
    import torch

    return torch.tensor(rows, dtype=torch.long)


def test_stream_chunks_concatenate_to_the_non_stream_text_and_usage_is_right(local_server):
    url, _ = local_server
    whole = complete(url, prompt=PROMPT, max_tokens=60, temperature=0, ignore_eos=True).json()
    events = stream_events(
        url,
        prompt=PROMPT,
        max_tokens=60,
        temperature=0,
        ignore_eos=True,
        stream_options={"include_usage": True},
    )
    assert events[-1] == "[DONE]"
    usage_event, chunks = events[-2], events[:-2]
    assert usage_event["choices"] == []
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    prompt_tokens = httpx.post(f"{url}/tokenize", json={"prompt": PROMPT}, timeout=10).json()
    expected = {
        "prompt_tokens": prompt_tokens["count"],
        "completion_tokens": 60,
        "total_tokens": prompt_tokens["count"] + 60,
    }
    assert usage_event["usage"] == expected == whole["usage"]


def test_a_seeded_sampled_request_gives_the_same_text_twice(local_server):
    url, _ = local_server
    body = {"prompt": PROMPT, "max_tokens": 40, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
    first = complete(url, **body).json()["choices"][0]["text"]
    second = complete(url, **body).json()["choices"][0]["text"]
    other = complete(url, **{**body, "seed": 99}).json()["choices"][0]["text"]
    assert first == second
    assert first != other


def test_token_id_prompts_and_tokenize_detokenize_round_trip(local_server, stories):
    url, _ = local_server
    ids = httpx.post(f"{url}/tokenize", json={"prompt": PROMPT}, timeout=10).json()["tokens"]
    assert ids == stories.encode(PROMPT)
    text = httpx.post(f"{url}/detokenize", json={"tokens": ids}, timeout=10).json()["prompt"]
    assert text.endswith(PROMPT)  # special tokens kept, as vLLM does
    by_ids = complete(url, prompt=ids, max_tokens=20, temperature=0).json()
    by_text = complete(url, prompt=PROMPT, max_tokens=20, temperature=0).json()
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]


def test_a_stop_string_ends_the_text_before_it(local_server, stories):
    url, _ = local_server
    full = runner_greedy(stories, PROMPT, 40)
    assert "Lily" in full
    body = complete(url, prompt=PROMPT, max_tokens=40, temperature=0, stop=["Lily"]).json()
    choice = body["choices"][0]
    assert choice["text"] == full[: full.index("Lily")]
    assert choice["finish_reason"] == "stop"
    events = stream_events(url, prompt=PROMPT, max_tokens=40, temperature=0, stop=["Lily"])
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == choice["text"]


def test_min_tokens_and_top_k_are_honoured(local_server):
    url, _ = local_server
    body = complete(url, prompt=PROMPT, max_tokens=300, temperature=0, min_tokens=250).json()
    assert body["usage"]["completion_tokens"] >= 250
    top1 = complete(url, prompt=PROMPT, max_tokens=30, temperature=1.0, top_k=1, seed=5).json()
    greedy = complete(url, prompt=PROMPT, max_tokens=30, temperature=0).json()
    assert top1["choices"][0]["text"] == greedy["choices"][0]["text"]


def test_x_request_id_is_honoured(local_server):
    url, _ = local_server
    response = httpx.post(
        f"{url}/v1/completions",
        headers={"X-Request-Id": "my-req-7"},
        json={"model": MODEL, "prompt": PROMPT, "max_tokens": 5},
        timeout=30,
    )
    assert response.headers["x-request-id"] == "my-req-7"
    assert response.json()["id"] == "my-req-7"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-9", "prompt": "x"}, 404, "model"),
        ({"model": MODEL, "prompt": "x", "n": 3}, 400, "n"),
        ({"model": MODEL, "prompt": "x", "logprobs": 2}, 400, "logprobs"),
        ({"model": MODEL, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 10_000}, 400, "max_tokens"),
        ({"model": MODEL, "prompt": [1, 99_999]}, 400, "prompt"),
        ({"model": MODEL, "prompt": ""}, 400, "prompt"),
        ({"model": MODEL, "prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ],
)
def test_bad_requests_get_openai_error_json_naming_the_field(local_server, body, status, param):
    url, _ = local_server
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_invalid_json_and_chat_without_a_template_are_400(local_server):
    url, _ = local_server
    response = httpx.post(
        f"{url}/v1/completions",
        content=b"{nope",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        timeout=10,
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 400
    assert "--chat-template" in chat.json()["error"]["message"]


def test_unknown_fields_are_ignored(local_server):
    url, _ = local_server
    body = complete(url, prompt=PROMPT, max_tokens=5, some_future_field={"x": 1})
    assert body.status_code == 200


def test_the_openai_client_works_streaming_and_not(local_server):
    url, _ = local_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=30, temperature=0)
    parts = client.completions.create(
        model=MODEL,
        prompt=PROMPT,
        max_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(parts)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt=PROMPT, max_tokens=3)


def test_metrics_use_vllm_names_under_the_tandem_prefix(local_server):
    url, _ = local_server
    complete(url, prompt=PROMPT, max_tokens=10, temperature=0, ignore_eos=True)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for name in (
        "time_to_first_token_seconds_bucket",
        "inter_token_latency_seconds_bucket",
        "request_time_per_output_token_seconds_bucket",
        "e2e_request_latency_seconds_count",
        "num_requests_running",
        "num_requests_waiting",
        "kv_cache_usage_perc",
        "prompt_tokens_total",
        "generation_tokens_total",
        "num_preemptions_total",
        "kv_transfer_bytes_total",
    ):
        assert f"tandem:{name}" in text, name
    generated = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tandem:generation_tokens_total{")
    )
    assert generated >= 10


def test_a_client_that_disconnects_cancels_its_request(local_server):
    url, thread = local_server
    controller = thread.server.front.controller
    before = sum(s.generation_tokens_total for s in controller.worker_stats())
    with long_stream(url, 500) as lines:
        for _ in range(3):
            next(lines)
    deadline = time.monotonic() + 30
    while controller.num_in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert controller.num_in_flight == 0
    decode = [h.worker for h in controller.decode]
    while any(w.stats().num_running for w in decode) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(w.stats().num_running for w in decode)
    generated = sum(s.generation_tokens_total for s in controller.worker_stats()) - before
    assert generated < 500  # stopped early: the 500-token request did not run to its end


def test_decode_views_show_each_running_request_to_the_policies(local_server):
    url, thread = local_server
    controller = thread.server.front.controller
    with long_stream(url, 400) as lines:
        for _ in range(20):
            next(lines)
        deadline = time.monotonic() + 10
        rows = []
        while not rows and time.monotonic() < deadline:
            rows = [r for view in controller.decode_views() for r in view.running()]
        assert len(rows) == 1
        row = rows[0]
        assert row.prompt_tokens == 5 and row.tokens_generated >= 1
        assert row.kv_tokens == row.prompt_tokens + row.tokens_generated
        views = controller.decode_views()
        assert sum(v.num_running for v in views) == 1
        assert sum(v.kv_used_tokens for v in views) >= row.kv_tokens - 1
