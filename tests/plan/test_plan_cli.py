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


def test_infeasibility_names_the_model_that_decided_and_true_reasons() -> None:
    """At 1e7 req/s both SLOs can be met per request; only the instance count is out of the
    search's range. The message says so, names the improved model, and reports the paper's
    (feasible) answer, instead of claiming the SLOs are below one request's latency."""
    args = ["plan", "--input-len", "1000", "--output-len", "200", "--rate", "1e7rps"]
    args += ["--slo", "ttft=2s,tpot=100ms", "--profile", "llama3-8b_a100_tp1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["infeasible_in"] == ["improved"] and out["paper"]["feasible"]
    assert "more than 100,000 prefill instances" in out["reason"]
    assert "more than 100,000 decode instances" in out["reason"]
    assert "not above" not in out["reason"] and "batch of one" not in out["reason"]
    message = " ".join(result.stderr.split())
    assert "infeasible under Tandem's improved model" in message
    assert "the paper's model is feasible" in message


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


def test_plan_outside_the_measured_range_says_so_once() -> None:
    """The decode batch meeting TPOT 100 ms on Llama-2-70B TP4 is above the 64 measured: one
    warning line and the JSON's 'extrapolated' say so (issue 18 item 5)."""
    args = ["plan", "--input-len", "2000", "--output-len", "400", "--rate", "5rps"]
    args += ["--slo", "ttft=10s,tpot=100ms", "--profile", "llama2-70b_h100_tp4", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = json.loads(result.stdout)["extrapolated"]
    assert "llama2-70b_h100_tp4" in line and "above the measured max 64" in line
    assert result.stderr.count("warning: extrapolated") == 1
    inside = runner.invoke(app, [*PAPER, "--slo", "ttft=2s,tpot=20ms", "--json"])
    assert json.loads(inside.stdout)["extrapolated"] == [] and "warning" not in inside.stderr


def test_plan_verify_on_vllms_random_dataset_flags() -> None:
    """A synthetic workload from vLLM's flags: planned at --request-rate and verified in the
    simulator on those requests (issue 18 item 4)."""
    args = ["plan", "--random-input-len", "1000", "--random-output-len", "200"]
    args += ["--random-range-ratio", "0.5", "--request-rate", "8", "--num-prompts", "300"]
    args += ["--goodput", "ttft:2000 tpot:50", "--profile", "llama3-8b_a100_tp1"]
    result = runner.invoke(app, [*args, "--verify", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rate_rps"] == 8.0 and out["verified_num_prefill"] is not None
