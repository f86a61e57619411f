"""`tandem demo` runs the main job on embedded defaults, end to end."""

from __future__ import annotations

from typer.testing import CliRunner

from tandem.cli import app


def test_demo_shows_stats_a_plan_and_the_rescheduling_comparison() -> None:
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Capacity plan: servegen-r1" in result.output
    assert "decode rescheduling policies" in result.output
    for policy in ("round-robin", "least-kv", "llumnix", "ares"):
        assert f"│ {policy} " in result.output
