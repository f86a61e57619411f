"""`tandem demo` runs the main job on embedded defaults, end to end."""

from __future__ import annotations

from typer.testing import CliRunner

from tandem.cli import app


def test_demo_shows_stats_a_plan_and_the_rescheduling_comparison() -> None:
    # An 80-column terminal: every table fits, nothing is cut short with an ellipsis.
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Capacity plan: servegen-r1" in result.output
    assert "rescheduling policies" in result.output  # the title wraps at 80 columns
    for policy in ("round-robin", "least-kv", "llumnix", "ares"):
        assert f"┃ {policy} " in result.output or f" {policy} ┃" in result.output
    for metric in ("P99 TPOT ms", "preempted", "migrations"):
        assert f"│ {metric} " in result.output
    assert "…" not in result.output
