"""`tandem simulate` from the command line, the goodput search and the timeline plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tandem.cli import app
from tandem.sim.goodput import find_max_rate_scale

runner = CliRunner()
BASE = [
    "simulate",
    "--workload",
    "azure-conv",
    "--num-requests",
    "400",
    "--prefill",
    "1",
    "--decode",
    "1",
]


def test_simulate_json_has_vllm_keys_and_counts() -> None:
    result = runner.invoke(app, [*BASE, "--slo", "ttft=2s,tpot=100ms", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    for key in (
        "mean_ttft_ms",
        "p99_tpot_ms",
        "request_goodput",
        "num_completed",
        "num_preempted",
        "num_rejected",
        "slo_attainment",
    ):
        assert key in m
    assert m["num_completed"] + m["num_rejected"] == 400


def test_simulate_timeline_plot(tmp_path: Path) -> None:
    out = tmp_path / "timeline.png"
    result = runner.invoke(app, [*BASE, "--timeline", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


def test_find_goodput_reports_requests_and_tokens_per_second() -> None:
    result = runner.invoke(app, [*BASE, "--slo", "ttft=1s,tpot=50ms", "--find-goodput", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.output)
    assert m["goodput_rps"] > 0 and m["goodput_tokens_per_s"] > m["goodput_rps"]
    assert m["goodput_attainment"] >= 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefill", "0"], "at least one prefill"),
        (["--placement", "magic"], "unknown placement policy"),
        (["--rate-scale", "-1"], "--rate-scale must be a finite number > 0"),
        (["--profile", "gpt-5_h100"], "unknown"),
        (["--find-goodput"], "--find-goodput needs --slo"),
        # issue 18 item 6: nonsense that was accepted
        (["--rate-scale", "nan"], "--rate-scale must be a finite number > 0"),
        (["--rate-scale", "inf"], "--rate-scale must be a finite number > 0"),
        (["--prediction", "noise:-1"], "noise level must be a finite number >= 0"),
        (["--prediction", "noise:nan"], "noise level must be a finite number >= 0"),
        (["--slo", "ttft=nan"], "finite time > 0"),
        (["--slo", "ttft=1s,ttft=2s"], "given twice"),
        (["--slo", ""], "--slo is empty"),
    ],
)
def test_impossible_requests_are_refused_with_a_message(args: list[str], message: str) -> None:
    from tandem.errors import TandemError

    result = runner.invoke(app, [*BASE, *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, TandemError) and message in str(result.exception)


def test_slo_in_vllms_goodput_form_is_milliseconds() -> None:
    """`--goodput 'ttft:2000 tpot:50'` (vLLM's form, ms) equals `--slo ttft=2s,tpot=50ms`."""
    results = [
        json.loads(runner.invoke(app, [*BASE, *args, "--json"]).output)
        for args in (["--goodput", "ttft:2000 tpot:50"], ["--slo", "ttft=2s,tpot=50ms"])
    ]
    assert results[0]["slo_attainment"] == results[1]["slo_attainment"] is not None


def test_goodput_search_finds_the_threshold_of_a_monotone_attainment() -> None:
    def attainment(scale: float) -> float:
        return 1.0 if scale <= 3.3 else 0.5

    found = find_max_rate_scale(attainment, rel_tol=0.01)
    assert 3.3 * 0.99 <= found.rate_scale <= 3.3


def test_goodput_search_that_never_fails_says_its_answer_is_a_cap() -> None:
    found = find_max_rate_scale(lambda scale: 1.0, max_doublings=4)
    assert found.capped and found.rate_scale == 16.0
    assert not find_max_rate_scale(lambda scale: 1.0 if scale <= 3.3 else 0.5).capped


def test_goodput_search_when_even_tiny_load_fails() -> None:
    assert find_max_rate_scale(lambda s: 0.0, max_doublings=4).rate_scale == 0.0


def test_goodput_search_with_a_small_growth_never_probes_far_past_the_answer() -> None:
    probes: list[float] = []

    def attainment(scale: float) -> float:
        probes.append(scale)
        return 1.0 if scale <= 3.3 else 0.5

    found = find_max_rate_scale(attainment, start=3.0, rel_tol=0.01, growth=1.25)
    assert 3.3 * 0.99 <= found.rate_scale <= 3.3
    assert max(probes) <= 3.0 * 1.25


def test_goodput_search_refuses_a_growth_that_cannot_bracket() -> None:
    from tandem.errors import TandemError

    with pytest.raises(TandemError, match="growth factor"):
        find_max_rate_scale(lambda s: 1.0, growth=1.0)


def test_simulation_outside_the_measured_range_says_so_in_one_line() -> None:
    """servegen-r1's long prompts and contexts on a profile measured to 8,192 tokens: one
    warning line (no raw Python warning with its source line) and the JSON's 'extrapolated'
    (issue 18 items 5 and 6)."""
    args = ["simulate", "-w", "servegen-r1", "--profile", "llama2-70b_h100_tp4"]
    args += ["--num-requests", "60", "--prefill", "1", "--decode", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = json.loads(result.stdout)["extrapolated"]
    assert "prompt of" in line and "above the measured max 8,192" in line
    assert "mean context" in line
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("warning: extrapolated")
    assert "OutOfMeasuredRangeWarning" not in result.stderr
    inside = runner.invoke(app, [*BASE, "--json"])
    assert json.loads(inside.stdout)["extrapolated"] == [] and inside.stderr == ""


def test_simulate_runs_vllms_random_dataset_flags() -> None:
    """`--random-input-len/--random-output-len/--request-rate/--burstiness/--num-prompts`
    simulate the synthetic workload; beside another workload they are refused (issue 18)."""
    args = ["simulate", "--random-input-len", "256", "--random-output-len", "32"]
    args += ["--request-rate", "5", "--burstiness", "0.5", "--num-prompts", "120", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["num_requests"] == 120 and m["workload"].startswith("random-256x32")
    assert m["total_input_tokens"] == 120 * 256
    refused = runner.invoke(app, ["simulate", "-w", "azure-conv", "--request-rate", "5"])
    assert refused.exit_code != 0 and "-w random" in str(refused.exception)


def test_a_huge_cluster_says_what_it_is_doing_before_the_long_build() -> None:
    """Tens of thousands of instances take a while to build: a line on stderr says so before
    (issue 18 item 6; a million instances ran for minutes without a word)."""
    args = ["simulate", "--num-requests", "20", "--prefill", "6000", "--decode", "6000", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "simulating 20 requests on 6,000 prefill and 6,000 decode instances" in result.stderr
    assert json.loads(result.stdout)["num_completed"] == 20


def _saved_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every matplotlib figure saved from now on (then written as usual)."""
    from matplotlib.figure import Figure

    saved: list = []
    original = Figure.savefig

    def record(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--policy", "ares"], "policy ares"),
        (["--rescheduler", "ares", "--prediction", "oracle"], "rescheduler ares"),
    ],
)
def test_timeline_title_names_the_policy_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], named: str
) -> None:
    """The title named the placement alone: 'round-robin placement' when the ares
    rescheduler ran (issue 18 item 6)."""
    saved = _saved_figures(monkeypatch)
    out = tmp_path / "timeline.png"
    result = runner.invoke(app, [*BASE, *options, "--timeline", str(out)])
    assert result.exit_code == 0, result.output
    (figure,) = saved
    title = figure.axes[0].get_title()
    assert named in title, title
