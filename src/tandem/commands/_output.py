"""Small helpers shared by the commands: JSON output and rich tables."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout (nothing else is printed with ``--json``)."""
    typer.echo(json.dumps(obj, indent=2, sort_keys=False))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        # The first column names the row: it is never cut short.
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    Console().print(table)


def print_mapping(title: str, mapping: Mapping[str, Any]) -> None:
    print_table(title, ["metric", "value"], [(k, v) for k, v in mapping.items()])


def parse_positive_ints(text: str, option: str) -> tuple[int, ...]:
    """``"16,64"`` into ``(16, 64)``; anything else is refused naming the option."""
    from tandem.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} must be positive integers, got {text!r}")
    return values


#: The formats a plot may be written in: matplotlib picks the format from the suffix, so the
#: file written is exactly the path given (a name without one would gain ``.png``).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def plot_path(path: Path | None, option: str) -> Path | None:
    """The one rule for every command's plot file, applied before any work: the name must end
    in .png, .svg or .pdf and must not be a directory; missing parent directories are created
    (as ``--out-dir`` does). Commands print the path they wrote, ``plot written to PATH``."""
    from tandem.errors import ConfigError

    if path is None:
        return None
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"{option} {path}: the file name must end in {', '.join(PLOT_SUFFIXES)}")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create its directory ({exc})") from None
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
