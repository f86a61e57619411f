"""``tandem profile measure`` against a real server writes a profile the simulator reads."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from tandem.bench.measure import DecodeMeasurement, PrefillMeasurement, measured_profile
from tandem.cli import app


def test_measure_against_tandem_writes_a_profile_that_simulate_and_plan_read(
    local_server, tmp_path
):
    url, _ = local_server
    out, plot = tmp_path / "measured.yaml", tmp_path / "measured.png"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "measure",
            "--base-url",
            url,
            "--input-len",
            "32",
            "--output-len",
            "16",
            "--concurrency",
            "1,4",
            "--prefill-concurrency",
            "4",
            "--out",
            str(out),
            "--plot",
            str(plot),
        ],
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["kv"] == {"bytes_per_token": 1280, "capacity_tokens": 16384}  # from /metrics
    assert doc["prefill"]["points"][0]["input_len_tokens"] == 32
    batches = [p["batch_size"] for p in doc["decode"]["points"]]
    assert batches[0] == 1 and batches == sorted(batches)
    assert plot.stat().st_size > 0
    sim = CliRunner().invoke(
        app,
        [
            "simulate",
            "-w",
            "azure-conv",
            "--profile",
            str(out),
            "--prefill",
            "1",
            "--decode",
            "1",
            "--num-requests",
            "20",
            "--json",
        ],
    )
    assert sim.exit_code == 0, sim.output


def test_profile_tpot_never_falls_as_the_batch_grows():
    prefill = PrefillMeasurement(64, 10_000.0, 0.02, 0.0136, 64)
    noisy = [
        DecodeMeasurement(1, 1.0, 7.0, 3, True),
        DecodeMeasurement(4, 3.6, 6.5, 12, True),
        DecodeMeasurement(8, 3.9, 9.0, 24, True),
    ]
    doc = measured_profile(
        name="m",
        model="m",
        hardware="h",
        source="s",
        prefill=prefill,
        decode=noisy,
        kv_bytes_per_token=1,
        kv_capacity_tokens=100,
    )
    points = doc["decode"]["points"]
    assert [p["batch_size"] for p in points] == [1, 4]  # 3.6 and 3.9 both round to 4
    assert [p["tpot_ms"] for p in points] == [7.0, 9.0]  # the dip is clipped, the max kept
    assert "TPOT 6.50 ms" in doc["source"]  # raw figures kept
