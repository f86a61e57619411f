"""`tandem experiment rescheduling` runs end to end and writes its table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tandem.cli import app
from tandem.workload.request import Request, Workload


def test_rescheduling_experiment_writes_results_per_workload_and_policy(tmp_path: Path) -> None:
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "2"]
    args += ["--window-s", "600", "--policies", "round-robin,llumnix,ares"]
    args += ["--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cell = data["workloads"]["azure-code/2P2D"]
    assert set(cell["policies"]) == {"round-robin", "llumnix", "ares"}
    for metrics in cell["policies"].values():
        assert {"p99_tpot_ms", "goodput_rps", "num_preempted"} <= set(metrics)
    assert json.loads((tmp_path / "results.json").read_text()) == data
    assert (tmp_path / "kv_azure-code_2D_round-robin.png").stat().st_size > 1000
    assert (tmp_path / "kv_azure-code_2D_ares.png").stat().st_size > 1000


def test_unknown_policy_is_refused() -> None:
    result = CliRunner().invoke(app, ["experiment", "rescheduling", "--policies", "magic"])
    assert result.exit_code != 0 and "unknown policy" in str(result.exception)


def test_every_load_replays_the_same_seconds_of_arrivals() -> None:
    """A higher load (or a larger cluster's) replays more of the trace, compressed into the same
    window, rather than squeezing a fixed slice of trace into a few seconds."""
    from tandem.experiments.rescheduling import Setup
    from tandem.metrics.serving import parse_slo
    from tandem.perf.registry import get_profile
    from tandem.workload import load_workload

    trace = load_workload("azure-code")
    setup = Setup(trace, get_profile("llama3-8b_a100_tp1"), 1, 1, parse_slo("tpot=100ms"), 120.0)
    low, high = setup.at(1.0), setup.at(30.0)  # 30 x 120 s is longer than the trace: repeated
    assert trace.duration_s < 30 * 120
    assert low.duration_s <= 120.0
    assert 115.0 < high.duration_s <= 120.0  # dense: the repeated trace fills the window
    # 3,600 s of trace (one whole repeat and a bit) in 120 s: 30 times the mean rate
    assert len(high) / high.duration_s == pytest.approx(30 * setup.base_rate_rps, rel=0.1)
    assert len({r.request_id for r in high.requests}) == len(high)


def test_bad_window_is_refused() -> None:
    result = CliRunner().invoke(app, ["experiment", "rescheduling", "--window-s", "0"])
    assert result.exit_code != 0 and "--window-s must be positive" in str(result.exception)


def test_a_search_that_never_fails_reports_its_cap_as_a_cap(tmp_path: Path) -> None:
    """Every load meets a loose SLO: the table says the search's cap, never 'round-robin's 90%
    load', and the JSON flags it (issue 18 item 6)."""
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "1"]
    args += ["--window-s", "5", "--policies", "round-robin,least-kv", "--max-goodput"]
    args += ["--slo", "ttft=1000s,tpot=10s", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # titles wrap
    assert "search's cap" in text and "round-robin's 90% load" not in text
    assert ">= " in text  # each policy's max goodput: a lower bound
    cell = json.loads((tmp_path / "results.json").read_text())["workloads"]["azure-code/1P1D"]
    assert cell["rate_scale_capped"] and cell["slo"] == "ttft=1000s,tpot=10s"
    assert all(p["max_goodput_capped"] for p in cell["policies"].values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefill-ratio", "0"], "--prefill-ratio must be a finite number > 0"),
        (["--prefill-ratio", "nan"], "--prefill-ratio must be a finite number > 0"),
        (["--slo", "ttft=nan"], "finite time > 0"),
    ],
)
def test_nonsense_options_are_refused(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["experiment", "rescheduling", *args])
    assert result.exit_code != 0 and message in str(result.exception)


def test_experiment_on_vllms_random_dataset_flags(tmp_path: Path) -> None:
    """`--workloads random` with vLLM's flags compares policies on the synthetic workload;
    without a finite --request-rate it is refused (issue 18 item 4)."""
    args = ["experiment", "rescheduling", "--workloads", "random", "--decode", "1"]
    args += ["--random-input-len", "800", "--random-output-len", "300", "--num-prompts", "200"]
    args += ["--window-s", "20", "--policies", "round-robin,least-kv"]
    refused = CliRunner().invoke(app, [*args, "--out-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "--request-rate" in str(refused.exception)
    result = CliRunner().invoke(
        app, [*args, "--request-rate", "2", "--out-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    cell = json.loads(result.stdout)["workloads"]["random/1P1D"]
    assert set(cell["policies"]) == {"round-robin", "least-kv"}


def test_prefix_cache_reaches_the_experiments_cluster(tmp_path: Path) -> None:
    """--prefix-cache-tokens: the Setup's cluster caches prefixes (a repeated prefix hits in a
    run), the JSON says so, and a cache of 0 tokens is refused by name."""
    from tandem.experiments.rescheduling import Setup, config_for
    from tandem.metrics.serving import parse_slo
    from tandem.perf.registry import get_profile
    from tandem.sim import simulate
    from tandem.workload.request import Request, Workload

    trace = Workload(
        "hashed", tuple(Request(i, 1.0 * i, 1024, 8, prefix_hashes=(7, 8)) for i in range(5))
    )
    cost = get_profile("llama3-8b_a100_tp1")
    off = Setup(trace, cost, 1, 1, parse_slo("tpot=100ms"), 10.0)
    on = Setup(trace, cost, 1, 1, parse_slo("tpot=100ms"), 10.0, prefix_cache_tokens=4096)
    assert config_for(off, "round-robin").prefix_cache_tokens is None
    config = config_for(on, "ares")
    assert config.prefix_cache_tokens == 4096
    cached = simulate(on.at(1.0), config).cached_tokens
    assert cached is not None and cached[0] == 0 and (cached[1:] == 1023).all()  # 1 token computed
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "1"]
    args += ["--window-s", "5", "--policies", "round-robin", "--out-dir", str(tmp_path)]
    refused = CliRunner().invoke(app, [*args, "--prefix-cache-tokens", "0"])
    assert refused.exit_code != 0
    assert "--prefix-cache-tokens must be >= 1, got 0" in str(refused.exception)
    result = CliRunner().invoke(app, [*args, "--prefix-cache-tokens", "4096", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prefix_cache_tokens"] == 4096


def _synthetic(outputs: list[int], prompt: int = 1000) -> Workload:
    requests = tuple(
        Request(request_id=i, arrival_s=float(i), prompt_tokens=prompt, output_tokens=o)
        for i, o in enumerate(outputs)
    )
    return Workload("t", requests)


def test_the_window_is_sized_by_the_lifetimes_of_the_requests_holding_the_memory() -> None:
    """A few long answers hold most of the memory: they set the window, not the mean. Short
    answers keep the 600 s floor."""
    from tandem.experiments.rescheduling import MIN_WINDOW_S, steady_window_s
    from tandem.perf.registry import get_profile

    cost = get_profile("llama2-70b_a100_tp2")
    short = steady_window_s(_synthetic([100] * 50), cost)
    assert short.window_s == MIN_WINDOW_S and short.weighted_output_tokens == pytest.approx(100)
    # 49 answers of 100 tokens and one of 20,000: the mean is ~500 tokens, but the long one
    # holds ~98% of the KV token-steps, so the memory-weighted output is near 20,000.
    mixed = steady_window_s(_synthetic([100] * 49 + [20_000]), cost)
    assert 19_000 < mixed.weighted_output_tokens < 20_000
    assert mixed.window_s == pytest.approx(3 * mixed.weighted_output_tokens * mixed.step_s)
    assert mixed.window_s > 5 * MIN_WINDOW_S
    # The step is the cost model's at a batch filling memory with mean requests.
    assert mixed.step_s > cost.decode_step_time_s(1, 1000)


def test_decode_capacity_is_memory_over_the_token_steps_a_request_holds() -> None:
    """Requests of 1,000 prompt and 100 output tokens hold (1,000 + 50) x 100 token-steps each;
    instances of C tokens stepping in s seconds with a full batch sustain C / (105,000 s) a
    second each, twice that with twice the instances."""
    from tandem.experiments.rescheduling import decode_capacity_rps
    from tandem.perf.registry import get_profile

    cost = get_profile("llama2-70b_a100_tp2")
    trace = _synthetic([100] * 20)
    batch = cost.kv_capacity_tokens // 1050
    step = cost.decode_step_time_s(batch, batch * 1050)
    one = decode_capacity_rps(trace, cost, 1)
    assert one == pytest.approx(cost.kv_capacity_tokens / (105_000 * step))
    assert decode_capacity_rps(trace, cost, 2) == pytest.approx(2 * one)
    longer = decode_capacity_rps(_synthetic([200] * 20), cost, 1)
    assert longer < one / 2  # twice the output holds more than twice the token-steps


def test_a_seed_replays_another_sample_of_the_same_trace() -> None:
    from tandem.experiments.rescheduling import Setup
    from tandem.metrics.serving import parse_slo
    from tandem.perf.registry import get_profile
    from tandem.workload.transforms import rotate

    trace = _synthetic(list(range(1, 31)))
    turned = rotate(trace, 10.0)
    assert [r.output_tokens for r in turned.requests] == [*range(11, 31), *range(1, 11)]
    assert [r.arrival_s for r in turned.requests] == [float(i) for i in range(30)]
    cost = get_profile("llama3-8b_a100_tp1")
    slo = parse_slo("tpot=100ms")
    first = Setup(trace, cost, 1, 1, slo, 10.0).at(1.0)
    second = Setup(trace, cost, 1, 1, slo, 10.0, seed=1).at(1.0)
    assert [r.output_tokens for r in first.requests] == list(range(1, 11))
    assert [r.output_tokens for r in second.requests] == list(range(11, 21))  # from 1/3 on


def test_the_default_window_is_said(tmp_path: Path) -> None:
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "1"]
    args += ["--policies", "round-robin", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "azure-code: window 600 s of arrivals (memory-weighted mean" in result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["workloads"]["azure-code/1P1D"]["window_s"] == 600.0


def test_output_scale_lengthens_every_answer_and_bad_values_are_refused(tmp_path: Path) -> None:
    args = ["experiment", "rescheduling", "--workloads", "azure-code", "--decode", "1"]
    args += ["--window-s", "5", "--policies", "round-robin", "--out-dir", str(tmp_path)]
    runs = {}
    for scale in ("1", "3"):
        result = CliRunner().invoke(app, [*args, "--output-scale", scale, "--json"])
        assert result.exit_code == 0, result.output
        runs[scale] = json.loads(result.output)
    assert runs["3"]["output_scale"] == 3.0
    one = runs["1"]["workloads"]["azure-code/1P1D"]["policies"]["round-robin"]
    three = runs["3"]["workloads"]["azure-code/1P1D"]["policies"]["round-robin"]
    assert three != one  # three times the answers: another run
    bad = CliRunner().invoke(app, [*args, "--output-scale", "0"])
    assert bad.exit_code != 0 and "--output-scale must be" in str(bad.exception)


def test_extrapolation_is_one_line_not_a_python_warning(tmp_path: Path) -> None:
    """servegen-r1 has prompts past llama2-70b's measured 8,192 tokens: said once, in words,
    and in results.json, without a Python warning's source line."""
    args = ["experiment", "rescheduling", "--workloads", "servegen-r1", "--decode", "1"]
    args += ["--profile", "llama2-70b_a100_tp2", "--window-s", "60"]
    args += ["--policies", "round-robin", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stderr.splitlines() if "extrapolat" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: extrapolated beyond")
    assert "llama2-70b_a100_tp2" in lines[0] and "prefill.py" not in result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["extrapolated"] == [lines[0].split(": ", 2)[2]]
