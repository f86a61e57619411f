"""Graceful shutdown: SIGTERM stops new connections, lets a running stream finish, then stops
the workers, and ``tandem serve`` exits 0."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
from conftest import kill_sessions, wait_healthy


def test_sigterm_lets_a_running_stream_finish_then_exits_zero():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tandem",
            "serve",
            "--backend",
            "local",
            "--port",
            "0",
            "--decode",
            "1",
            "--shutdown-timeout",
            "60",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://[0-9.]+:\d+", proc.stdout.readline()).group(0)
        wait_healthy(url, 300, proc)
        events: list[str] = []
        started = threading.Event()

        def stream() -> None:
            body = {
                "model": "stories260K",
                "prompt": "Once upon a time",
                "max_tokens": 400,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(60)
        proc.send_signal(signal.SIGTERM)
        refused = False
        deadline = time.monotonic() + 30
        while not refused and time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/health", timeout=2)
                time.sleep(0.05)
            except httpx.HTTPError:
                refused = True  # no new connections once shutting down
        reader.join(timeout=120)
        assert refused
        assert events[-1] == "[DONE]"  # the running stream was not cut
        usage = json.loads(events[-2])["usage"]
        assert usage["completion_tokens"] == 400
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            kill_sessions({proc.pid})
