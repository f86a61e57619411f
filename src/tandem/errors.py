"""User-facing errors.

Everything a user can get wrong (a bad file, an unknown name, an impossible number) raises a
``TandemError`` subclass with a message that says what is wrong and where. The CLI prints the
message and exits non-zero, without a traceback; library users catch the type.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class TandemError(Exception):
    """Base class of every error caused by user input rather than by a bug."""


class InputFormatError(TandemError):
    """A file does not follow its format. Names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


def require_file(path: str | Path) -> Path:
    """``path`` as a ``Path``; an ``InputFormatError`` naming it if it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(path, None, None, "no such file")
    return path


class UnknownNameError(TandemError):
    """A name (workload, profile, policy, model, ...) that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {kind} '{name}'; known: {', '.join(self.known)}")


class ConfigError(TandemError):
    """A parameter or combination of parameters that cannot work (zero instances, negative rate)."""
