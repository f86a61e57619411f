"""Verification by simulation, the steady-state run length, the attainment plot, the model's
batching and feedback terms, and the demo hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tandem.cli import app
from tandem.commands.plan import print_demo_plan
from tandem.plan.inputs import parse_tpot_table, shape_from_means
from tandem.plan.planner import PlanRequest, decode_model_for, prefill_model_for, table_cost_model
from tandem.plan.queueing import batch_residual_s
from tandem.plan.verify import (
    WINDOW_LIFETIMES,
    SimCriteria,
    check,
    steady_run_length,
    verification_workload,
)

runner = CliRunner()
BASE = ["plan", "--input-len", "1024", "--output-len", "128", "--rate", "10rps"]
BASE += ["--slo", "ttft=1s,tpot=50ms", "--profile", "llama3-8b_a100_tp1"]
COST = table_cost_model(
    input_len_tokens=1024,
    prefill_max_tokens_per_s=20000,
    overhead_s=0.5,
    tpot_points=parse_tpot_table("1:8,10:12,20:15,40:21,80:33,160:60"),
)


def test_run_length_covers_warmup_window_and_tail() -> None:
    """Uncapped: the judged window starts after warm-up and spans >= 8 decode lifetimes."""
    run = steady_run_length(20.0, 5.0)
    assert run.judge_from_s > 0
    assert run.judge_until_s - run.judge_from_s >= WINDOW_LIFETIMES * 5.0
    assert run.num_requests >= 20.0 * (run.judge_until_s + 5.0) - 1


def test_run_length_respects_the_cap() -> None:
    """A cap on requests shrinks the run, and the window still lies inside it."""
    run = steady_run_length(200.0, 10.0, max_requests=1000)
    assert run.num_requests == 1000
    assert 0 < run.judge_from_s < run.judge_until_s < 1000 / 200.0


def test_simulated_ttft_includes_the_request_overhead() -> None:
    """The simulator does not add the overhead outside the instances; verification does."""
    w = verification_workload(1.0, 50, input_len=1024, output_len=16)
    c = check(w, COST, 1, 1, SimCriteria(10.0, 1.0))
    assert c.ttft_s >= 0.5 + 1024 / 20000


def test_batch_residual_grows_with_load_and_is_zero_without_arrivals() -> None:
    """Gated batches lengthen with load; no arrivals, no residual."""
    assert batch_residual_s(0.0, 0.1, 0.01, 0.8) == 0.0
    low, high = batch_residual_s(2.0, 0.1, 0.01, 0.8), batch_residual_s(8.0, 0.1, 0.01, 0.8)
    assert 0.05 <= low < high <= 0.8


@pytest.mark.filterwarnings("ignore")
def test_no_batching_delay_when_one_prompt_fills_the_budget() -> None:
    """Prompts of the full token budget are prefilled alone: batching adds nothing."""
    req = PlanRequest(shape_from_means(8192, 128), 1.0, 5.0, 0.05, COST, 0.0)
    assert prefill_model_for(req).batching_s(1.0, 1) == 0.0
    short = PlanRequest(shape_from_means(512, 128), 20.0, 5.0, 0.05, COST, 0.0)
    assert prefill_model_for(short).batching_s(20.0, 1) > 0.0


@pytest.mark.filterwarnings("ignore")
def test_decode_feedback_amplifies_only_when_steps_grow_with_the_batch() -> None:
    """A flat step time has no feedback; a growing one amplifies the spread (factor > 1)."""
    flat = table_cost_model(
        input_len_tokens=1024,
        prefill_max_tokens_per_s=20000,
        overhead_s=0.0,
        tpot_points=parse_tpot_table("1:10,100:10"),
    )
    shape = shape_from_means(1024, 128)
    for cost, expect_amplified in ((flat, False), (COST, True)):
        req = PlanRequest(shape, 10.0, 5.0, 0.05, cost, 0.0)
        dm = decode_model_for(req, prefill_model_for(req), 1)
        assert (dm.feedback(30.0) > 1.0) is expect_amplified


@pytest.mark.filterwarnings("ignore")
def test_predicted_attainment_falls_with_load() -> None:
    """Both halves of the predicted attainment lie in [0, 1] and fall as load rises."""
    shape = shape_from_means(1024, 128)
    shares = []
    for rate in (5.0, 15.0, 18.0):
        req = PlanRequest(shape, rate, 0.3, 0.02, COST, 0.0)
        pm = prefill_model_for(req)
        dm = decode_model_for(req, pm, 1)
        share = pm.attainment(rate, 1, 0.3) * dm.attainment(rate * 128, 1, 0.02)
        assert 0.0 <= share <= 1.0
        shares.append(share)
    assert shares[0] > shares[1] >= shares[2]


def test_verify_reports_the_cheapest_simulated_plan() -> None:
    """--verify --json: verified_num_prefill/decode is the cheapest candidate that meets."""
    result = runner.invoke(app, [*BASE, "--verify", "--verify-requests", "400", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    checks = out["verify"]["checks"]
    met = [c for c in checks if c["meets"]]
    best = min(met, key=lambda c: (c["num_prefill"] + c["num_decode"], c["num_decode"]))
    assert (out["verified_num_prefill"], out["verified_num_decode"]) == (
        best["num_prefill"],
        best["num_decode"],
    )
    assert all(0.0 <= c["predicted_attainment"] <= 1.0 for c in checks)
    assert "num_prefill" in out and "paper" in out


def test_plot_writes_a_png(tmp_path: Path) -> None:
    """--plot writes a PNG file (checked by its signature)."""
    out = tmp_path / "attainment.png"
    result = runner.invoke(app, [*BASE, "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["a.jpg", "."])
def test_bad_plot_path_is_a_one_line_error(tmp_path: Path, name: str) -> None:
    """A name matplotlib would not write as given, or a directory: ConfigError before
    simulating (a missing directory is created, as by every --plot: tests/test_cli.py)."""
    result = runner.invoke(app, [*BASE, "--plot", str(tmp_path / name)])
    assert result.exit_code != 0
    assert "--plot" in str(result.exception)


def test_demo_plan_prints_both_plans(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo hook shows the paper's steps and the improved plan."""
    print_demo_plan()
    out = capsys.readouterr().out
    assert "servegen-r1" in out and "TP_prefill" in out and "Improved plan" in out


def test_attainment_plot_has_the_90_line_and_the_plan_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's curve was drawn first, under a neighbour's with the same points; no 90%
    line (issue 18 item 6)."""
    from matplotlib.figure import Figure

    from tandem.plan.search import plot_attainment

    saved: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self))
    req = PlanRequest(shape_from_means(1024, 128), 10.0, 1.0, 0.05, COST, 0.0)
    same = [(0.5, 1.0, 1.0), (1.0, 0.95, 0.9), (1.5, 0.4, 0.3)]
    curves = {(2, 3): list(same), (1, 3): list(same), (2, 4): list(same)}
    plot_attainment(req, curves, (2, 3), tmp_path / "a.png")
    (ax,) = saved[0].axes
    assert any(list(line.get_ydata()) == [0.9, 0.9] for line in ax.get_lines())
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-" and line.get_marker()]
    plan = [line for line in solid if "(plan)" in line.get_label()]
    assert len(plan) == 1 and len(solid) == 3
    assert plan[0].get_zorder() > max(line.get_zorder() for line in solid if line is not plan[0])
    assert ax.get_lines().index(plan[0]) > max(
        ax.get_lines().index(x) for x in solid if x is not plan[0]
    )


def test_verify_simulates_with_the_prefix_cache() -> None:
    """--prefix-cache-tokens reaches plan --verify's simulations: requests repeating a prefix
    skip it there (lower TTFT), the analytic request carries it, and 0 is refused by name."""
    from dataclasses import replace

    from tandem.plan.search import criteria
    from tandem.workload.request import Request, Workload

    # 1,024-token prompts (COST's measured length): a shared block, then one of their own.
    w = Workload(
        "hashed", tuple(Request(i, 2.0 * i, 1024, 4, prefix_hashes=(1, 100 + i)) for i in range(6))
    )
    off = check(w, COST, 1, 1, SimCriteria(10.0, 1.0))
    on = check(w, COST, 1, 1, SimCriteria(10.0, 1.0, prefix_cache_tokens=100 * 512))
    # 5 of 6 prompts skip half their tokens: 512 / 20,000 tokens/s each
    assert off.ttft_s - on.ttft_s == pytest.approx(5 / 6 * 512 / 20000, rel=0.05)
    req = PlanRequest(shape_from_means(1024, 128), 10.0, 1.0, 0.05, COST)
    assert criteria(req).prefix_cache_tokens is None
    assert criteria(replace(req, prefix_cache_tokens=4096)).prefix_cache_tokens == 4096
    result = runner.invoke(app, [*BASE, "--verify", "--prefix-cache-tokens", "0"])
    assert result.exit_code != 0
    assert "--prefix-cache-tokens must be >= 1, got 0" in str(result.exception)
