"""``tandem bench serve`` against real HTTP servers: Tandem's own, and small misbehaving ones."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from typer.testing import CliRunner

from tandem.cli import app
from tandem.commands.bench import parse_goodput
from tandem.errors import ConfigError


def bench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["bench", "serve", *args], env={"COLUMNS": "120"})
    return result.exit_code, result.output


def test_synthetic_burst_against_tandem_reports_forced_lengths_and_saves_requests(
    local_server, tmp_path
):
    url, _ = local_server
    out, saved = tmp_path / "m.json", tmp_path / "requests.jsonl"
    code, text = bench(
        "--base-url",
        url,
        "--num-prompts",
        "12",
        "--request-rate",
        "50",
        "--random-input-len",
        "20",
        "--random-output-len",
        "24",
        "--goodput",
        "ttft:60000 tpot:60000",
        "--json",
        str(out),
        "--save-requests",
        str(saved),
    )
    assert code == 0, text
    metrics = json.loads(out.read_text())
    assert metrics["completed"] == 12 and metrics["failed"] == 0
    assert metrics["total_output_tokens"] == 12 * 24  # ignore_eos honoured
    assert metrics["total_input_tokens"] == 12 * 20  # token-id prompts of exact length
    assert metrics["slo_attainment"] == 1.0
    from tandem.workload import load_workload

    replay = load_workload(str(saved))
    assert len(replay.requests) == 12
    assert {r.output_tokens for r in replay.requests} == {24}


def test_a_closed_loop_never_exceeds_its_concurrency(local_server, tmp_path):
    url, _ = local_server
    out = tmp_path / "m.json"
    code, text = bench(
        "--base-url",
        url,
        "--num-prompts",
        "10",
        "--max-concurrency",
        "2",
        "--random-output-len",
        "16",
        "--json",
        str(out),
    )
    assert code == 0, text
    assert 1 <= json.loads(out.read_text())["max_concurrency_reached"] <= 2


def test_vllm_goodput_form_is_parsed_in_milliseconds():
    slo = parse_goodput("ttft:2000 tpot:50")
    assert slo.ttft_s == 2.0 and slo.tpot_s == 0.05
    for bad in ("ttft=2", "ttft:-1", "ttft:nan", "ttft:1 ttft:2", ""):
        with pytest.raises(ConfigError):
            parse_goodput(bad)


def test_a_refused_connection_is_one_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tandem",
            "bench",
            "serve",
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--num-prompts",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr


# -- misbehaving servers ---------------------------------------------------------------------


def _odd_server(mode: str) -> FastAPI:
    """A tiny OpenAI-shaped server: 'strict' refuses ignore_eos with 422 (as transformers serve
    does); 'broken' streams malformed SSE; 'stall' never finishes its stream; 'fail' is 500."""
    odd = FastAPI()

    @odd.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "odd", "object": "model"}]}

    @odd.post("/v1/completions")
    async def completions(request: Request):  # noqa: ANN202
        body = await request.json()
        if mode == "strict" and "ignore_eos" in body:
            return JSONResponse({"detail": "extra field ignore_eos"}, status_code=422)
        if mode == "fail":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)

        async def events():  # noqa: ANN202
            if mode == "broken":
                yield b"data: {not json\n\n"
                return
            chunk = {"choices": [{"index": 0, "text": "hi", "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            if mode == "stall":
                await asyncio.sleep(3600)
            last = {
                "choices": [{"index": 0, "text": "!", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            }
            yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    return odd


@contextmanager
def odd_server(mode: str) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_odd_server(mode), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_a_server_refusing_ignore_eos_is_benched_without_it(tmp_path):
    out = tmp_path / "m.json"
    with odd_server("strict") as url:
        code, text = bench("--base-url", url, "--num-prompts", "3", "--json", str(out))
    assert code == 0, text
    assert "refuses ignore_eos" in text
    assert json.loads(out.read_text())["completed"] == 3


@pytest.mark.parametrize("mode", ["broken", "stall", "fail"])
def test_broken_streams_stalls_and_errors_are_counted_failed_never_a_hang(mode, tmp_path):
    out = tmp_path / "m.json"
    with odd_server(mode) as url:
        code, text = bench(
            "--base-url",
            url,
            "--num-prompts",
            "2",
            "--timeout",
            "2",
            "--no-ignore-eos",
            "--json",
            str(out),
        )
    assert code == 0, text
    metrics = json.loads(out.read_text())
    assert metrics["completed"] == 0 and metrics["failed"] == 2
    assert metrics["error_samples"]
    assert "Traceback" not in text


def test_a_sweep_reports_attainment_and_latency_at_each_load(local_server, tmp_path):
    url, _ = local_server
    out, plot = tmp_path / "sweep.json", tmp_path / "plots" / "sweep.png"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "sweep",
            "--base-url",
            url,
            "--rates",
            "4,40",
            "--num-prompts",
            "8",
            "--random-input-len",
            "16",
            "--random-output-len",
            "16",
            "--goodput",
            "ttft:60000 tpot:60000",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ],
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["level"] for r in rows] == [4.0, 40.0]
    assert all(r["completed"] == 8 and r["slo_attainment"] == 1.0 for r in rows)
    assert plot.stat().st_size > 0  # its missing directory created (the one --plot rule)
    assert f"plot written to {plot}" in result.output


def test_a_sweep_without_an_slo_says_what_is_missing(local_server):
    url, _ = local_server
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "bench", "sweep", "--base-url", url, "--rates", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "needs an SLO" in proc.stderr


@pytest.mark.parametrize("name", ["sweep.jpg", "."])
def test_a_sweep_refuses_a_bad_plot_path_before_any_request(tmp_path, name):
    """The one --plot rule (as plan, simulate, trace, profile): a suffix matplotlib would not
    write as given, or a directory, is refused before the server is asked anything (the
    sweep wrote 'wrote PATH' after the whole run and matplotlib chose the format; issue 18)."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = CliRunner().invoke(
        app,
        ["bench", "sweep", "--base-url", url, "--rates", "1", "--slo", "ttft=2s,tpot=50ms"]
        + ["--plot", str(tmp_path / name)],
    )
    assert isinstance(result.exception, ConfigError), result.output
    assert "--plot" in str(result.exception)


def test_the_sweep_plot_draws_the_90_line_and_each_given_slo(tmp_path, monkeypatch):
    """Attainment with its 90% line; TTFT and TPOT percentiles with the SLO where one is given
    (issue 18 item 6's plot lines; no server needed)."""
    from matplotlib.figure import Figure

    from tandem.commands.bench import _plot_sweep
    from tandem.metrics.serving import parse_slo

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self))
    fields = [f"{s}_{k}_ms" for k in ("ttft", "tpot") for s in ("median", "p90", "p99")]
    rows = [dict({f: 10.0 * level for f in fields}, level=level, slo_attainment=1 / level)
            for level in (1.0, 2.0)]  # fmt: skip
    _plot_sweep(tmp_path / "s.png", "m", "req/s", rows, parse_slo("ttft=2s,tpot=50ms"))
    attain, ttft, tpot = saved[0].axes
    assert any(list(line.get_ydata()) == [0.9, 0.9] for line in attain.get_lines())
    for ax, limit in ((ttft, 2000.0), (tpot, 50.0)):
        assert any(list(line.get_ydata()) == [limit, limit] for line in ax.get_lines())
