"""`tandem demo` runs the main job on embedded defaults, end to end, as one story."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tandem.cli import app
from tandem.commands import demo


def test_demo_plans_a_cluster_compares_policies_on_it_and_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shorter window than the demo's 600 s keeps the test quick; the story is the same.
    monkeypatch.setattr(demo, "DEMO_WINDOW_S", 150.0)
    # An 80-column terminal: every table fits, nothing is cut short with an ellipsis.
    # Quick mode of the real-serving part: in-process workers, a small burst.
    args = ["demo", "--serve-backend", "local", "--serve-requests", "8"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.output
    flat = " ".join(out.split())
    assert "Capacity plan: servegen-r1" in out
    planned = re.search(r"│ plan\s+│\s+(\d+)P(\d+)D │", out)
    assert planned, out
    plan_p, plan_d = int(planned[1]), int(planned[2])

    # The comparison grows the plan's traffic; the planner's count for it, what runs.
    story = re.search(
        rf"Traffic outgrows the plan: {demo.DEMO_GROWTH:g}x the trace's rate arrives "
        r"\(([\d.]+) req/s over 150 s\), and the planner now asks for (\d+)P(\d+)D, but "
        r"(\d+)P(\d+)D is what runs\.",
        flat,
    )
    assert story, flat
    rate = float(story[1])
    grown_p, grown_d = int(story[2]), int(story[3])
    assert (int(story[4]), int(story[5])) == (plan_p, plan_d)
    assert grown_d > plan_d  # the grown traffic needs decode instances the plan does not have
    # The compared cluster: the plan's decode instances, prefill as much as the grown rate needs.
    title = re.search(
        rf"servegen-r1, [\d,]+ requests at {rate:.1f} req/s \({demo.DEMO_GROWTH:g}x the "
        r"trace's\) on (\d+)P(\d+)D llama3-8b_a100_tp1, SLO ttft=5s,tpot=100ms: decode policies",
        flat,
    )
    assert title, flat
    assert int(title[2]) == plan_d
    assert int(title[1]) == max(plan_p, grown_p)
    if grown_p > plan_p:  # prefill binds first on the planned cluster, and the demo says so
        assert f"On {plan_p}P{plan_d}D as planned, prefill runs out first" in flat
    assert f"On {title[1]}P{plan_d}D, decode KV memory binds" in flat
    assert f"At {rate:.1f} req/s on {title[1]}P{plan_d}D, " in flat
    for policy in ("round-robin", "least-kv", "llumnix", "ares"):
        assert f"┃ {policy} " in out or f" {policy} ┃" in out
    for metric in ("P99 TPOT ms", "SLO met", "preempted", "migrations"):
        assert f"│ {metric} " in out

    assert "same loop on a real server in miniature" in flat
    assert "8 of 8 requests complete, 0 failed" in out
    assert "plan from the measured profile" in out
    assert "Served by tandem serve (local) vs simulated" in out
    for metric in ("TTFT p50 ms", "TPOT p90 ms", "output tokens/s"):
        assert f"│ {metric} " in out
    assert "…" not in out
