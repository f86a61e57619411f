"""``tandem serve`` refuses bad flags with one line naming what is wrong (exit 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--backend", "foo"], "unknown backend 'foo'"),
        (["--decode", "0"], "--decode must be >= 1"),
        (["--port", "99999"], "--port must be in 0..65535"),
        (["--placement", "nope"], "unknown placement policy 'nope'"),
        (["--prefill-resources", "notjson"], "--prefill-resources: not JSON"),
        (["--model", "/no/such/model"], "no such file or directory"),
        (["--chat-template", "/no/such.jinja"], "no such file"),
    ],
)
def test_bad_flags_are_one_clear_error(args, says):
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_pinned_workers_each_get_one_core_prefill_first():
    import os

    from tandem.serve.server import ServeConfig

    cores = sorted(os.sched_getaffinity(0))
    configs = ServeConfig(pin_cpus=True, num_prefill=1, num_decode=2).worker_configs()
    assert [c.cpu_affinity for c in configs] == [
        (cores[0],),
        (cores[1 % len(cores)],),
        (cores[2 % len(cores)],),
    ]
    assert all(c.cpu_affinity is None for c in ServeConfig().worker_configs())
