"""``tandem plan`` on the command line: JSON keys, the worked example, errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tandem.cli import app

runner = CliRunner()
PAPER = [
    "plan",
    "--input-len",
    "6144",
    "--output-len",
    "512",
    "--throughput",
    "5M/min",
    "--prefill-max-throughput",
    "28300",
    "--overhead",
    "0.1s",
    "--tpot-table",
    "10:12.8,20:16.4,30:18.8,40:21.6,50:23.9,60:26.2",
]
KEYS = {
    "num_prefill",
    "num_decode",
    "raw_num_prefill",
    "raw_num_decode",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "decode_batch_size",
    "pd_ratio",
    "feasible",
}


def test_json_has_the_documented_keys_and_the_papers_numbers() -> None:
    """--json: the keys, and the paper's 3P4D in ``paper``."""
    result = runner.invoke(app, [*PAPER, "--slo", "ttft=2s,tpot=20ms", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out.keys() >= KEYS
    assert (out["paper"]["num_prefill"], out["paper"]["num_decode"]) == (3, 4)
    assert round(out["paper"]["prefill_tokens_per_s"]) == 25066


def test_human_output_shows_the_steps() -> None:
    """The table names TP_prefill, TP_decode and the rounded plan."""
    result = runner.invoke(app, [*PAPER, "--slo", "ttft=2s,tpot=20ms"])
    assert result.exit_code == 0, result.output
    assert "TP_prefill" in result.output and "3P4D" in result.output


def test_infeasible_slo_exits_nonzero_with_the_reason() -> None:
    """TTFT 0.2 s cannot fit a 6,144-token prefill (0.22 s) plus 0.1 s overhead."""
    result = runner.invoke(app, [*PAPER, "--slo", "ttft=200ms,tpot=20ms", "--json"])
    assert result.exit_code != 0
    assert "infeasible" in result.output and "TTFT" in result.output


def test_profile_with_verify_runs_the_simulator() -> None:
    """--profile plus --verify reports simulated candidates."""
    args = ["plan", "--input-len", "1024", "--output-len", "128", "--rate", "10rps"]
    args += ["--slo", "ttft=1s,tpot=50ms", "--profile", "llama3-8b_a100_tp1"]
    result = runner.invoke(app, [*args, "--verify", "--verify-requests", "300", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["verify"]["checks"]


def test_missing_profile_is_a_user_error() -> None:
    """No --profile, --measured or tables: ConfigError naming the options."""
    result = runner.invoke(
        app,
        [
            "plan",
            "--input-len",
            "10",
            "--output-len",
            "10",
            "--rate",
            "1",
            "--slo",
            "ttft=1s,tpot=1s",
        ],
    )
    assert result.exit_code != 0
    assert "--profile" in str(result.exception)
