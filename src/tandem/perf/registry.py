"""Find cost models by name: the built-in profiles, any model x hardware x TP by roofline, and
users' measured files.

``get_profile`` accepts

- a built-in profile name (``llama3-8b_a100_tp1``; see ``list_profiles()``);
- ``roofline:<model>:<hardware>:tp<N>`` for any built-in model and hardware;
- a path to a measured-profile file (YAML or JSON, see ``tandem.perf.measured_file``) or to a
  file in the built-in profile format.

The built-in profiles live in ``tandem/perf/profiles/*.json``, written by
``scripts/build_profiles.py``; nothing here reads the raw measurement data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from tandem.errors import ConfigError, UnknownNameError
from tandem.perf._loading import parse_json_text, read_mapping
from tandem.perf.base import CostModel
from tandem.perf.instance import InstanceSpec
from tandem.perf.measured import MeasuredCostModel
from tandem.perf.measured_file import load_measured, measured_from_mapping
from tandem.perf.profile_file import (
    PROFILE_FORMAT,
    ProfileDocument,
    build_cost_model,
    parse_profile,
)
from tandem.perf.roofline import RooflineCostModel
from tandem.perf.specs import get_hardware, get_model

__all__ = [
    "ProfileInfo",
    "get_profile",
    "list_profiles",
    "load_cost_model_file",
    "load_measured",
    "profile_documents",
    "roofline_profile",
]

ROOFLINE_PREFIX = "roofline:"


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """What ``tandem profile list`` shows about one built-in profile."""

    name: str
    model: str
    hardware: str
    tensor_parallel: int
    source: str
    kind: str
    description: str


def _profile_files() -> list[Traversable]:
    folder = resources.files("tandem.perf") / "profiles"
    files = [f for f in folder.iterdir() if f.name.endswith(".json")]
    return sorted(files, key=lambda f: f.name)


def _read(file: Traversable) -> ProfileDocument:
    return parse_profile(parse_json_text(file.read_text(encoding="utf-8"), file.name), file.name)


def profile_documents() -> Iterator[ProfileDocument]:
    """Every built-in profile document, sorted by name."""
    for file in _profile_files():
        yield _read(file)


def list_profiles() -> list[ProfileInfo]:
    """Metadata of the built-in profiles, sorted by name."""
    return [
        ProfileInfo(d.name, d.model, d.hardware, d.tensor_parallel, d.source, d.kind, d.description)
        for d in profile_documents()
    ]


def _document(name: str) -> ProfileDocument | None:
    for file in _profile_files():
        if file.name == f"{name}.json":
            return _read(file)
    return None


def roofline_profile(
    model: str,
    hardware: str,
    tensor_parallel: int,
    activation_reserve_fraction: float | None = None,
) -> RooflineCostModel:
    """A roofline cost model for any built-in model on any built-in hardware."""
    spec, hw = get_model(model), get_hardware(hardware)
    instance = (
        InstanceSpec(spec, hw, tensor_parallel)
        if activation_reserve_fraction is None
        else InstanceSpec(spec, hw, tensor_parallel, activation_reserve_fraction)
    )
    return RooflineCostModel(f"roofline:{spec.name}:{hw.name}:tp{tensor_parallel}", instance)


def _parse_roofline(name: str, reserve: float | None) -> RooflineCostModel:
    parts = name[len(ROOFLINE_PREFIX) :].split(":")
    if len(parts) != 3:
        raise ConfigError(f"'{name}': expected roofline:<model>:<hardware>:tp<N>")
    model, hardware, tp_text = parts
    tp_digits = tp_text.lower().removeprefix("tp")
    if not tp_digits.isdigit() or int(tp_digits) < 1:
        raise ConfigError(f"'{name}': tensor-parallel degree '{tp_text}' is not tp<N> (N >= 1)")
    return roofline_profile(model, hardware, int(tp_digits), reserve)


def get_profile(name: str, activation_reserve_fraction: float | None = None) -> CostModel:
    """The cost model called ``name`` (a built-in profile, ``roofline:...`` or a file path).

    ``activation_reserve_fraction`` overrides the share of HBM kept back from the KV cache
    (default 0.10); it does not apply to measured files, which state their KV capacity.
    """
    if name.startswith(ROOFLINE_PREFIX):
        return _parse_roofline(name, activation_reserve_fraction)
    doc = _document(name)
    if doc is not None:
        return build_cost_model(doc, activation_reserve_fraction)
    path = Path(name)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return load_cost_model_file(path, activation_reserve_fraction)
    known = [p.name for p in list_profiles()] + [f"{ROOFLINE_PREFIX}<model>:<hardware>:tp<N>"]
    raise UnknownNameError("profile", name, known)


def load_cost_model_file(
    path: str | Path, activation_reserve_fraction: float | None = None
) -> CostModel:
    """A user file: the built-in profile format if it says so, else a measured-profile file."""
    data = read_mapping(path)
    if data.get("format") == PROFILE_FORMAT:
        return build_cost_model(parse_profile(data, path), activation_reserve_fraction)
    model: MeasuredCostModel = measured_from_mapping(data, path)
    return model
