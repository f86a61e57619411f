"""Fixtures of the serving tests: real servers on 127.0.0.1, a real two-node Ray cluster.

- ``local_server``: the in-process backend (1 prefill + 2 decode workers), one per session.
- ``ray_cluster``: a head node (resource ``node_a``) and a second node joined with
  ``ray start --address`` (resource ``node_b``), on loopback addresses 127.0.0.2 / 127.0.0.3
  (Ray rewrites 127.0.0.1 into the machine's external address, which tests must not use).
  Each ``ray start --block`` runs in its own session; teardown kills those sessions' processes
  by id (``ray stop`` would end every Ray process on the machine).
- ``ray_server``: ``tandem serve`` as a user runs it (a subprocess), joined to that cluster with
  the prefill worker on one node and the decode worker on the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

torch = pytest.importorskip("torch")

HEAD_IP = "127.0.0.2"
NODE_IP = "127.0.0.3"
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
TANDEM = str(Path(sys.executable).with_name("tandem"))
RAY = str(Path(sys.executable).with_name("ray"))


def ray_env() -> dict[str, str]:
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # token auth is for real clusters (docs/serving.md)
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy within {timeout_s} s")


def _session_pids(sids: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids:  # field 6 of stat: session id
            pids.append(int(entry.name))
    return pids


def kill_sessions(sids: set[int], timeout_s: float = 5.0) -> None:
    """SIGTERM every process of these sessions, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while _session_pids(sids) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="session")
def stories():
    from tandem.engine.loader import load_model

    torch.set_num_threads(1)
    return load_model("default")


@pytest.fixture(scope="session")
def local_server():
    """(url, ServerThread) of an in-process server: 1 prefill + 2 decode workers."""
    from tandem.serve.server import ServeConfig, ServerThread

    torch.set_num_threads(1)
    thread = ServerThread(ServeConfig(backend="local", port=0))
    url = thread.start(ready_timeout_s=300)
    yield url, thread
    thread.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """Address of a two-node Ray cluster on this machine (nodes offer node_a / node_b)."""
    port = free_port(HEAD_IP)
    common = ["--num-cpus=2", "--object-store-memory=150000000", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--node-ip-address={HEAD_IP}",
            f"--port={port}",
            '--resources={"node_a": 100}',
            "--include-dashboard=false",
            *common,
        ],
        env=ray_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sids = {head.pid}
    address = f"{HEAD_IP}:{port}"
    try:
        _wait_nodes(address, 1)
        node = subprocess.Popen(
            [
                RAY,
                "start",
                f"--address={address}",
                f"--node-ip-address={NODE_IP}",
                '--resources={"node_b": 100}',
                *common,
            ],
            env=ray_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sids.add(node.pid)
        _wait_nodes(address, 2)
        yield address
    finally:
        kill_sessions(sids)


def _wait_nodes(address: str, count: int, timeout_s: float = 120.0) -> None:
    """Wait until a tiny driver sees ``count`` live nodes."""
    code = (
        f"import ray, json; ray.init(address={address!r}, _node_ip_address={HEAD_IP!r}, "
        "logging_level='ERROR');"
        "print(json.dumps(sum(n['Alive'] for n in ray.nodes())))"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=ray_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines and json.loads(lines[-1]) >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"Ray cluster at {address} did not reach {count} nodes")


@contextmanager
def cli_server(args: list[str], log_path: Path) -> Iterator[str]:
    """``tandem serve ARGS --port 0`` as a user runs it (a subprocess); its URL once healthy;
    SIGINT (graceful) afterwards, then a kill of its session if it lingers."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [TANDEM, "serve", "--port", "0", *args],
        env=ray_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://[0-9.]+:\d+", first)
        assert match, f"no URL in {first!r}; log: {log_path.read_text()[-2000:]}"
        url = match.group(0)
        wait_healthy(url, 300, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_sessions({proc.pid})
        log.close()


@pytest.fixture(scope="session")
def ray_server(ray_cluster, tmp_path_factory):
    """URL of ``tandem serve`` on the Ray cluster: prefill on node_a, two decode workers on
    node_b."""
    template = tmp_path_factory.mktemp("serve") / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    args = [
        "--ray-address",
        ray_cluster,
        "--decode",
        "2",
        "--prefill-resources",
        '{"node_a": 1}',
        "--decode-resources",
        '{"node_b": 1}',
        "--chat-template",
        str(template),
        "--served-model-name",
        "tiny-stories",
    ]
    with cli_server(args, tmp_path_factory.mktemp("serve") / "server.log") as url:
        yield url
