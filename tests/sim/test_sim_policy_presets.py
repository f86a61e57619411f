"""A decode policy name has one meaning: `simulate --policy ares` is the experiment's and the
demo's `ares`; component options override single parts and say when they are not ARES."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tandem.cli import app
from tandem.commands.simulate import prepare_workload
from tandem.experiments.rescheduling import POLICIES, Setup, config_for
from tandem.metrics.serving import parse_slo
from tandem.perf.registry import get_profile
from tandem.sim import simulate
from tandem.sim.presets import POLICY_PRESETS, policy_preset

runner = CliRunner()
SLO = "ttft=10s,tpot=100ms"
# Long reasoning outputs on small-KV instances: memory runs short, so ares migrates.
PROFILE = "llama2-7b_a100_tp1"
ARGS = ["simulate", "-w", "servegen-r1", "--num-requests", "300", "--rate-scale", "0.25"]
ARGS += ["--prefill", "3", "--decode", "2", "--profile", PROFILE, "--slo", SLO, "--json"]
COMPARED = ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "slo_attainment")
COMPARED += ("num_preempted", "num_migrations", "num_replaced", "migrated_bytes")


def _cli(*extra: str) -> dict:
    result = runner.invoke(app, [*ARGS, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_simulate_policy_ares_gives_the_experiments_ares_results_exactly() -> None:
    w = prepare_workload("servegen-r1", 0.25, 300, False)
    slo = parse_slo(SLO)
    setup = Setup(w, get_profile(PROFILE), 3, 2, slo, 600.0)
    expected = simulate(w, config_for(setup, "ares")).metrics(slo)
    got = _cli("--policy", "ares")
    assert expected["num_migrations"] > 0  # the rescheduler acted
    assert {k: got[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    assert (got["placement"], got["rescheduler"], got["prediction"], got["admission"]) == (
        "ares",
        "ares",
        "error-model",
        "predictive",
    )


def test_experiment_policies_are_exactly_the_presets() -> None:
    assert tuple(POLICY_PRESETS) == POLICIES
    w = prepare_workload("servegen-r1", 1.0, 10, False)
    setup = Setup(w, get_profile(PROFILE), 1, 1, parse_slo(SLO), 60.0)
    for name in POLICIES:
        c = config_for(setup, name)
        p = policy_preset(name)
        assert (c.placement, c.rescheduler, c.prediction, c.admission) == (
            p.placement,
            p.rescheduler,
            p.prediction,
            p.admission,
        )


def test_a_component_option_overrides_one_part_of_the_preset() -> None:
    oracle = _cli("--policy", "ares", "--prediction", "oracle")
    preset = _cli("--policy", "ares-oracle")
    assert {k: oracle[k] for k in COMPARED} == {k: preset[k] for k in COMPARED}


def test_rescheduler_ares_alone_is_the_component_and_says_so() -> None:
    result = runner.invoke(app, [*ARGS, "--rescheduler", "ares"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["placement"], out["rescheduler"], out["prediction"], out["admission"]) == (
        "round-robin",
        "ares",
        "none",
        "greedy",
    )
    assert "--policy ares" in result.stderr


@pytest.mark.parametrize("extra", [["--policy", "nope"], ["--admission", "predictive"]])
def test_unknown_policy_and_predictive_admission_without_predictions_are_refused(
    extra: list[str],
) -> None:
    result = runner.invoke(app, [*ARGS, *extra])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
