"""``tandem profile`` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tandem.cli import app
from tandem.errors import UnknownNameError

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "measured_deepseek_v3_h200.yaml"


def test_list_json_parses() -> None:
    result = runner.invoke(app, ["profile", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {"name", "model", "hardware", "tp", "source"} <= set(rows[0])
    assert len({(r["model"], r["hardware"]) for r in rows if r["source"] != "roofline"}) >= 6


def test_show_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = runner.invoke(app, ["profile", "show", "qwen2.5-7b_h100_tp1", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_json_of_a_measured_file_flags_out_of_range() -> None:
    result = runner.invoke(app, ["profile", "show", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tpot_points"][0] == {"batch_size": 10, "tpot_ms": 12.8}
    assert data["out_of_range"]


def test_fit_report_json_has_the_keys() -> None:
    result = runner.invoke(app, ["profile", "fit-report", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["profiles"] and data["splitwise_mean_abs_pct_error"] is not None
    for row in data["profiles"]:
        assert {"name", "mean_abs_pct_error", "max_abs_pct_error"} <= set(row)


def test_unknown_profile_is_a_user_error() -> None:
    result = runner.invoke(app, ["profile", "show", "nope"])
    assert isinstance(result.exception, UnknownNameError)
