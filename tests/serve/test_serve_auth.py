"""Authentication and exposure: ``--api-key`` guards every route but /health and /metrics
(401 with OpenAI error JSON otherwise), the server binds 127.0.0.1 unless told, and nothing
read from HTTP is unpickled."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

KEY = "s3cret-key"
MODEL = "stories260K"
GOOD = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed_server():
    from tandem.serve.server import ServeConfig, ServerThread

    thread = ServerThread(ServeConfig(backend="local", port=0, num_decode=1, api_key=KEY))
    url = thread.start(ready_timeout_s=300)
    yield url
    thread.stop()


GUARDED = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": []}),
    ("POST", "/tokenize", {"prompt": "Hi"}),
    ("POST", "/detokenize", {"tokens": [1]}),
    ("GET", "/v1/no-such-route", None),
]


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}],
)
def test_a_guarded_route_without_the_right_bearer_key_is_401(
    keyed_server, method, path, body, headers
):
    response = httpx.request(
        method, f"{keyed_server}{path}", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401 and error["type"] == "AuthenticationError"
    assert KEY not in response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), GUARDED[:5])
def test_the_right_key_opens_every_guarded_route(keyed_server, method, path, body):
    response = httpx.request(method, f"{keyed_server}{path}", json=body, headers=GOOD, timeout=30)
    assert response.status_code != 401
    assert response.status_code in (200, 400)  # chat with no messages: its own 400


def test_health_metrics_and_the_api_description_need_no_key(keyed_server):
    for path in ("/health", "/metrics", "/openapi.json"):
        assert httpx.get(f"{keyed_server}{path}", timeout=10).status_code == 200, path
    text = httpx.get(f"{keyed_server}/metrics", timeout=10).text
    assert (
        'tandem:num_requests_rejected_total{model_name="stories260K",reason="unauthorized"}' in text
    )


def test_the_openai_client_with_the_key_works_and_without_it_gets_authentication_error(
    keyed_server,
):
    import openai

    client = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=KEY, timeout=60, max_retries=0)
    done = client.completions.create(model=MODEL, prompt="Hi", max_tokens=3)
    assert done.usage is not None and done.usage.completion_tokens >= 1
    bad = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="nope", timeout=60, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_tandem_bench_serve_with_api_key_runs_against_a_keyed_server(keyed_server, tmp_path):
    from tandem.cli import app

    out = tmp_path / "m.json"
    args = ["bench", "serve", "--base-url", keyed_server, "--num-prompts", "3"]
    args += ["--random-input-len", "8", "--random-output-len", "4", "--json", str(out)]
    refused = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert refused.exit_code != 0 and "401" in str(refused.exception or refused.output)
    result = CliRunner().invoke(app, [*args, "--api-key", KEY], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["completed"] == 3 and metrics["failed"] == 0


def test_the_server_binds_loopback_unless_told_otherwise(local_server):
    from tandem.commands.serve import serve_command
    from tandem.serve.server import ServeConfig

    url, _ = local_server
    assert url.startswith("http://127.0.0.1:")
    assert ServeConfig().host == "127.0.0.1"
    assert inspect.signature(serve_command).parameters["host"].default.default == "127.0.0.1"


def test_an_empty_key_is_refused_and_the_key_never_shows_in_the_config_repr():
    from tandem.errors import ConfigError
    from tandem.serve.server import ServeConfig

    with pytest.raises(ConfigError, match="--api-key"):
        ServeConfig(api_key=" ")
    assert KEY not in repr(ServeConfig(api_key=KEY))


def test_nothing_from_http_is_unpickled_the_front_end_imports_no_deserializer_but_json():
    import tandem.serve.api as api
    import tandem.serve.protocol as protocol

    forbidden = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib", "yaml"}
    for module in (api, protocol):
        tree = ast.parse(Path(module.__file__).read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        assert not names & forbidden, (module.__name__, names & forbidden)
