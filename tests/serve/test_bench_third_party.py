"""The same client code against a real third-party server: ``transformers serve`` (from
``transformers[serving]``) on the embedded weights converted to a Hugging Face directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, kill_sessions

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMERS = str(Path(sys.executable).with_name("transformers"))


@pytest.fixture(scope="module")
def transformers_server(tmp_path_factory):
    """URL and model name of ``transformers serve --continuous-batching`` on 127.0.0.1."""
    hf_dir = tmp_path_factory.mktemp("hf") / "stories260K-hf"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gguf_to_hf.py"), str(hf_dir)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [
            TRANSFORMERS,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--continuous-batching",
            str(hf_dir),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, "transformers serve exited"
            try:
                cards = httpx.get(f"{url}/v1/models", timeout=5).json()["data"]
                break
            except (httpx.HTTPError, KeyError, ValueError):
                assert time.monotonic() < deadline, "transformers serve did not start"
                time.sleep(0.5)
        yield url, cards[0]["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_sessions({proc.pid})


def test_bench_against_transformers_serve_drops_ignore_eos_and_reports_real_lengths(
    transformers_server, tmp_path
):
    url, model = transformers_server
    out = tmp_path / "m.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tandem",
            "bench",
            "serve",
            "--base-url",
            url,
            "--num-prompts",
            "3",
            "--random-input-len",
            "8",
            "--random-output-len",
            "8",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refuses ignore_eos" in proc.stderr  # it answers 422 to the field
    metrics = json.loads(out.read_text())
    assert metrics["model"] == model
    assert metrics["completed"] == 3 and metrics["failed"] == 0
    assert 3 <= metrics["total_output_tokens"] <= 3 * 8  # real lengths, from its usage
