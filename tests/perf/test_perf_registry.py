"""Registry: names, roofline specs, files, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.errors import ConfigError, InputFormatError, UnknownNameError
from tandem.perf.fitted import FittedCostModel
from tandem.perf.registry import get_profile, list_profiles
from tandem.perf.roofline import RooflineCostModel

PROFILES = Path(__file__).resolve().parents[2] / "src" / "tandem" / "perf" / "profiles"


def test_unknown_profile_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_profile("llama3-8b_a100_tp3")
    message = str(err.value)
    assert "llama3-8b_a100_tp1" in message and "roofline:<model>:<hardware>:tp<N>" in message


def test_metadata_names_model_hardware_tp_and_source() -> None:
    info = {p.name: p for p in list_profiles()}["llama2-70b_h100_tp4"]
    assert (info.model, info.hardware, info.tensor_parallel) == ("llama2-70b", "h100", 4)
    assert "splitwise" in info.source


def test_roofline_for_any_model_and_hardware() -> None:
    model = get_profile("roofline:llama3-70b:b200:tp8")
    assert isinstance(model, RooflineCostModel)
    assert model.instance.tensor_parallel == 8


@pytest.mark.parametrize(
    ("name", "error", "text"),
    [
        ("roofline:llama9:h100:tp1", UnknownNameError, "unknown model 'llama9'"),
        ("roofline:llama3-8b:v100:tp1", UnknownNameError, "unknown hardware 'v100'"),
        ("roofline:llama3-8b:h100:four", ConfigError, "tp<N>"),
        ("roofline:llama3-8b:h100", ConfigError, "expected roofline"),
    ],
)
def test_bad_roofline_spec_says_what_is_wrong(name: str, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        get_profile(name)


def test_profile_format_file_by_path(tmp_path: Path) -> None:
    doc = json.loads((PROFILES / "llama3-8b_a100_tp1.json").read_text())
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc))
    assert isinstance(get_profile(str(path)), FittedCostModel)


def test_invalid_profile_file_names_the_field(tmp_path: Path) -> None:
    doc = json.loads((PROFILES / "llama3-8b_a100_tp1.json").read_text())
    doc["coefficients"]["decode"][0]["per_request_s"] = -1.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputFormatError) as err:
        get_profile(str(path))
    assert err.value.field == "coefficients.decode[0].per_request_s"


def test_missing_file_is_a_user_error() -> None:
    with pytest.raises(InputFormatError, match="cannot read"):
        get_profile("/nonexistent/measured.yaml")
