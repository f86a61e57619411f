"""Reading YAML/JSON profile files and turning validation failures into ``InputFormatError``s
that name the file and the bad field (``decode.points[2].tpot_ms``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tandem.errors import InputFormatError


class StrictModel(BaseModel):
    """Base of the file schemas: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_text(text: str, label: str | Path) -> dict[str, Any]:
    """Parse YAML (a superset of JSON) into a mapping; a syntax error names the line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputFormatError(label, line, None, f"not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputFormatError(label, None, None, "expected a mapping at the top level")
    return data


def parse_json_text(text: str, label: str | Path) -> dict[str, Any]:
    """Parse JSON into a mapping (much faster than the YAML parser on the same text)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFormatError(label, exc.lineno, None, f"not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputFormatError(label, None, None, "expected a mapping at the top level")
    return data


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFormatError(path, None, None, f"cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        return parse_json_text(text, path)
    return parse_text(text, path)


M = TypeVar("M", bound=BaseModel)
_SUBPATH = re.compile(r"^([A-Za-z_][\w\[\].]*): (.*)$", re.DOTALL)


def validate(schema: type[M], data: dict[str, Any], label: str | Path) -> M:
    """``schema.model_validate(data)``; the first error becomes an ``InputFormatError``."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key shows up as "unknown" plus "missing"; the unknown one is the cause.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        field = _dotted(first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif first["type"] == "value_error":
            # Our validators say "sub.path: reason"; append the sub-path to the field.
            message = message.removeprefix("Value error, ")
            match = _SUBPATH.match(message)
            if match:
                field = f"{field}.{match[1]}" if field else match[1]
                message = match[2]
        raise InputFormatError(label, None, field or None, message) from None


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
