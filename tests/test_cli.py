"""The command line: version, trace stats, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tandem import __version__
from tandem.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args], capture_output=True, text=True, timeout=120
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_trace_stats_json_reports_azure_conv_count() -> None:
    result = runner.invoke(app, ["trace", "stats", "azure-conv", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["num_requests"] == 19366
    for key in ("duration_s", "mean_rate_rps", "interarrival_cv"):
        assert stats[key] > 0
    assert set(stats["output_tokens"]) == {"mean", "p50", "p90", "p99", "max"}


def test_trace_stats_plot_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    result = runner.invoke(
        app, ["trace", "stats", str(DATA / "burstgpt_sample.csv"), "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


def test_unknown_workload_is_a_one_line_error_with_choices() -> None:
    proc = run_cli("trace", "stats", "nope")
    assert proc.returncode == 2
    assert "unknown workload 'nope'" in proc.stderr and "azure-conv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_trace_error_and_skip_bad(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.68,374,44\n"
        "2023-11-16 18:15:47.0,x,3\n"
    )
    proc = run_cli("trace", "stats", str(bad))
    assert proc.returncode == 2 and "line 3" in proc.stderr and "ContextTokens" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("trace", "stats", str(bad), "--skip-bad", "--json")
    assert proc.returncode == 0
    stats = json.loads(proc.stdout)
    assert stats["num_requests"] == 1 and "skipped 1 malformed rows" in stats["notes"][0]


def test_binary_trace_is_a_one_line_error_in_every_command(tmp_path: Path) -> None:
    """A binary file given as a trace: exit 2 naming the file, no traceback (issue 18)."""
    path = tmp_path / "trace.csv"
    path.write_bytes(bytes(range(256)) * 8)
    for args in (
        ["trace", "stats", str(path)],
        ["simulate", "-w", str(path)],
        ["plan", "-w", str(path), "--slo", "ttft=2s,tpot=100ms", "--profile", "llama3-8b_a100_tp1"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert "not UTF-8 text" in str(result.exception) and str(path) in str(result.exception)


def test_help_shows_flags_without_a_value_type() -> None:
    """`--json` is a flag: help must not print it as `--json <bool>` (issue 18)."""
    for args in (["simulate", "--help"], ["experiment", "rescheduling", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "120"})
        assert result.exit_code == 0 and "--json" in result.output
        assert "<bool>" not in result.output


PLOTTING = {
    "trace stats": ["trace", "stats", str(DATA / "burstgpt_sample.csv"), "--plot"],
    "profile show": ["profile", "show", "llama3-8b_a100_tp1", "--plot"],
    "simulate": ["simulate", "--num-requests", "50", "--prefill", "1", "--decode", "1"]
    + ["--timeline"],
    "plan": ["plan", "--input-len", "500", "--output-len", "100", "--rate", "1rps"]
    + ["--slo", "ttft=2s,tpot=100ms", "--profile", "llama3-8b_a100_tp1", "--plot"],
}


@pytest.mark.parametrize("command", ["trace stats", "profile show", "simulate"])
def test_every_plot_option_creates_directories_and_prints_the_file_written(
    tmp_path: Path, command: str
) -> None:
    """One --plot rule everywhere (issue 18): parent directories are created, and the path
    printed is the file written."""
    out = tmp_path / "new" / "dir" / "plot.png"
    result = runner.invoke(app, [*PLOTTING[command], str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000
    assert f"plot written to {out}" in " ".join(result.output.split())


@pytest.mark.parametrize("command", list(PLOTTING))
@pytest.mark.parametrize(("name", "message"), [("plot.txt", "must end in"), ("d.png", "directory")])
def test_every_plot_option_refuses_what_it_cannot_write(
    tmp_path: Path, command: str, name: str, message: str
) -> None:
    (tmp_path / "d.png").mkdir()
    result = runner.invoke(app, [*PLOTTING[command], str(tmp_path / name)])
    assert result.exit_code != 0 and message in str(result.exception)
