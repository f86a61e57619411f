"""`tandem demo` runs the main job on embedded defaults, end to end."""

from __future__ import annotations

from typer.testing import CliRunner

from tandem.cli import app


def test_demo_shows_stats_a_plan_the_rescheduling_comparison_and_real_serving() -> None:
    # An 80-column terminal: every table fits, nothing is cut short with an ellipsis.
    # Quick mode of the real-serving part: in-process workers, a small burst.
    args = ["demo", "--serve-backend", "local", "--serve-requests", "8"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Capacity plan: servegen-r1" in result.output
    assert "rescheduling policies" in result.output  # the title wraps at 80 columns
    # Why the comparison leaves the planned cluster, load and SLO (issue 18 item 6).
    flat = " ".join(result.output.split())
    assert "Why another cluster and SLO" in flat and "(3P12D for 17 req/s, SLO" in flat
    assert "16P16D at 1.9x the trace's rate" in flat and "SLO ttft=10s,tpot=100ms" in flat
    for policy in ("round-robin", "least-kv", "llumnix", "ares"):
        assert f"┃ {policy} " in result.output or f" {policy} ┃" in result.output
    for metric in ("P99 TPOT ms", "preempted", "migrations"):
        assert f"│ {metric} " in result.output
    assert "8 of 8 requests complete, 0 failed" in result.output
    assert "plan from the measured profile" in result.output
    assert "Served by tandem serve (local) vs simulated" in result.output
    for metric in ("TTFT p50 ms", "TPOT p90 ms", "output tokens/s"):
        assert f"│ {metric} " in result.output
    assert "…" not in result.output
