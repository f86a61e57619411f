"""Hostile input: every malformed request gets OpenAI error JSON with a 4xx naming the field;
fuzzing the bodies (hypothesis) and the OpenAPI schema (schemathesis) finds no 5xx.

The fuzzing here is small and deterministic (derandomized, few examples, no deadline, outputs
capped at a few tokens); ``benchmarks/fuzz_api.py`` is the long run.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODEL = "stories260K"
BODY_LIMIT = 64 * 1024
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def hostile_server():
    """A server with a chat template (so chat bodies reach generation) and a 64 KiB body cap."""
    from tandem.serve.server import ServeConfig, ServerThread

    config = ServeConfig(
        backend="local", port=0, num_decode=1, chat_template=TEMPLATE, max_body_bytes=BODY_LIMIT
    )
    thread = ServerThread(config)
    url = thread.start(ready_timeout_s=300)
    yield url
    thread.stop()


def post(url: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=60, **kwargs)


def chat(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


CASES = [
    ("/v1/completions", b"{nope", 400, None, "JSON"),
    ("/v1/completions", b'{"model": "x", "prompt": "\xff\xfe"}', 400, None, "UTF-8"),
    ("/v1/completions", b"[1, 2]", 400, None, "JSON object"),
    ("/v1/completions", b'{"model": "m", "temperature": NaN}', 400, None, "NaN"),
    ("/v1/completions", b'{"model": "m", "prompt": "x", "top_p": 1e999}', 400, "top_p", None),
    ("/v1/completions", b"[" * 30000 + b"]" * 30000, 400, None, None),
    ("/v1/completions", {"prompt": "x"}, 400, "model", "required"),
    ("/v1/completions", {"model": MODEL}, 400, "prompt", "required"),
    (
        "/v1/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": "ten"},
        400,
        "max_tokens",
        None,
    ),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": -5}, 400, "max_tokens", None),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens", None),
    (
        "/v1/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": 10**30},
        400,
        "max_tokens",
        None,
    ),
    (
        "/v1/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": True},
        400,
        "max_tokens",
        None,
    ),
    ("/v1/completions", {"model": MODEL, "prompt": [1] * 600}, 400, "prompt", "context length"),
    ("/v1/completions", {"model": "gpt-9", "prompt": "x"}, 404, "model", "gpt-9"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "n": 2}, 400, "n", None),
    ("/v1/completions", {"model": MODEL, "prompt": ""}, 400, "prompt", "empty"),
    ("/v1/completions", {"model": MODEL, "prompt": []}, 400, "prompt", "empty"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 10**12]}, 400, "prompt", "vocabulary"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, -3]}, 400, "prompt", None),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 2.5]}, 400, "prompt", None),
    ("/v1/completions", {"model": MODEL, "prompt": {"a": 1}}, 400, "prompt", None),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "stream": [1]}, 400, "stream", None),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "stop": [""]}, 400, "stop", None),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "seed": 2**64}, 400, "seed", None),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "min_tokens": 99}, 400, "min_tokens", None),
    ("/v1/chat/completions", {"model": MODEL}, 400, "messages", "required"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages", None),
    ("/v1/chat/completions", chat(content=5), 400, "messages[0].content", None),
    ("/v1/chat/completions", chat(max_completion_tokens=-1), 400, "max_completion_tokens", None),
    ("/v1/chat/completions", chat(content="x " * 2000), 400, "messages", "context length"),
    ("/v1/chat/completions", chat(n=3), 400, "n", None),
    ("/tokenize", {"prompt": 7}, 400, "prompt", None),
    ("/detokenize", {"tokens": [1, 10**9]}, 400, "tokens", "vocabulary"),
    ("/detokenize", {"tokens": "abc"}, 400, "tokens", None),
]


@pytest.mark.parametrize(("path", "body", "status", "param", "words"), CASES)
def test_each_malformed_request_gets_a_4xx_openai_error_naming_the_field(
    hostile_server, path, body, status, param, words
):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = post(hostile_server, path, headers={"content-type": "application/json"}, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["type"] and error["message"]
    if param is not None:
        assert error["param"] == param
    if words is not None:
        assert words in error["message"]


def test_bodies_over_the_limit_are_413_declared_or_chunked(hostile_server):
    big = json.dumps({"model": MODEL, "prompt": "x" * BODY_LIMIT}).encode()
    declared = post(hostile_server, "/v1/completions", content=big)
    assert declared.status_code == 413
    assert "--max-body-bytes" in declared.json()["error"]["message"]

    def chunks():  # no content-length: the server counts as it reads
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    chunked = post(hostile_server, "/v1/completions", content=chunks())
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert chunked.status_code == 413
    ok = post(
        hostile_server, "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 2}
    )
    assert ok.status_code == 200  # the server is unharmed


def test_unknown_routes_and_methods_get_openai_error_json(hostile_server):
    missing = httpx.get(f"{hostile_server}/v1/nothing", timeout=10)
    wrong = httpx.get(f"{hostile_server}/v1/completions", timeout=10)
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.json()["error"]["code"] == 404 and wrong.json()["error"]["code"] == 405


# -- fuzzing ----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "seed", "stop", "ignore_eos", "min_tokens", "stream", "stream_options",
    "n", "best_of", "logprobs", "echo", "logit_bias", "response_format", "tools",
]  # fmt: skip
PLAUSIBLE = {
    "model": st.just(MODEL) | st.text(max_size=8),
    "prompt": st.text(max_size=40) | st.lists(st.integers(-2, 600), max_size=8),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool"]), "content": JSON}
        ),
        max_size=3,
    ),
    "max_tokens": st.integers(-3, 2**40),
    "temperature": st.floats(-1, 3, allow_nan=False),
    "top_k": st.integers(-3, 2**70),
    "seed": st.integers(-(2**65), 2**65),
    "stop": st.lists(st.text(max_size=3), max_size=3),
    "stream": st.booleans(),
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True))
    body = {k: draw(PLAUSIBLE.get(k, JSON) if draw(st.booleans()) else JSON) for k in keys}
    if draw(st.booleans()):
        body["model"] = MODEL
    return cap_generation(body)


def cap_generation(body: Any) -> Any:
    """Keep outputs short: a valid length over 4 becomes 4 (an over-long one stays, for its
    400); chat without a length gets 4 (it would otherwise fill the context)."""
    if not isinstance(body, dict):
        return body
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 4 < value < 512:
            body[key] = 4
    if "messages" in body and body.get("max_tokens") is None:
        body["max_tokens"] = 4
    if isinstance(body.get("min_tokens"), int) and not isinstance(body["min_tokens"], bool):
        body["min_tokens"] = min(body["min_tokens"], 4)
    return body


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
    assert "InternalServerError" not in response.text, response.text[:500]  # stream errors


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_fuzzed_bodies_never_get_a_server_error(hostile_server, path):
    @FUZZ
    @given(body=bodies())
    def check(body: dict[str, Any]) -> None:
        assert_no_server_error(post(hostile_server, path, json=body))

    check()


def test_fuzzed_raw_bytes_never_get_a_server_error(hostile_server):
    @FUZZ
    @given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
    def check(raw: bytes) -> None:
        for path in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"):
            assert_no_server_error(post(hostile_server, path, content=raw))

    check()


def test_the_openapi_schema_publishes_the_request_bodies(hostile_server):
    paths = httpx.get(f"{hostile_server}/openapi.json", timeout=10).json()["paths"]
    for path in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["type"] == "object" and schema["properties"], path
    completion = paths["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert set(completion["schema"]["required"]) == {"model", "prompt"}


def test_schemathesis_from_the_openapi_schema_finds_no_server_error(hostile_server):
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(f"{hostile_server}/openapi.json", timeout=10)
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

        @FUZZ
        @given(case=schema.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            case.body = cap_generation(case.body)
            response = case.call(base_url=hostile_server, timeout=60)
            assert response.status_code < 500, (case.path, case.body, response.text[:300])

        check()
