"""`tandem experiment rescheduling` runs end to end and writes its table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tandem.cli import app


def test_rescheduling_experiment_writes_results_per_workload_and_policy(tmp_path: Path) -> None:
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "2"]
    args += ["--window-s", "600", "--policies", "round-robin,llumnix,ares"]
    args += ["--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cell = data["workloads"]["azure-code/2P2D"]
    assert set(cell["policies"]) == {"round-robin", "llumnix", "ares"}
    for metrics in cell["policies"].values():
        assert {"p99_tpot_ms", "goodput_rps", "num_preempted"} <= set(metrics)
    assert json.loads((tmp_path / "results.json").read_text()) == data
    assert (tmp_path / "kv_azure-code_2D_round-robin.png").stat().st_size > 1000
    assert (tmp_path / "kv_azure-code_2D_ares.png").stat().st_size > 1000


def test_unknown_policy_is_refused() -> None:
    result = CliRunner().invoke(app, ["experiment", "rescheduling", "--policies", "magic"])
    assert result.exit_code != 0 and "unknown policy" in str(result.exception)
