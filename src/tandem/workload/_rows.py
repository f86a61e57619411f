"""Shared machinery of the trace readers: open (optionally gzipped) text, parse fields with
errors that name file, line and field, and skip bad rows only when asked (and count them)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from tandem.errors import InputFormatError, require_file

T = TypeVar("T")


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a UTF-8 text file (a byte-order mark is skipped), transparently gunzipping
    ``*.gz``. What a user can get wrong is an ``InputFormatError`` naming the file, whenever
    it shows up while the ``with`` block reads: a missing file, bytes that are not UTF-8 (a
    binary file), a ``.gz`` that is not gzip or is cut short."""
    require_file(path)
    gz = path.suffix == ".gz"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            yield fh
    except UnicodeDecodeError as exc:
        raise InputFormatError(
            path, None, None, f"not UTF-8 text (byte {exc.object[exc.start]:#04x}); a binary file?"
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        if not gz:
            raise
        raise InputFormatError(
            path, None, None, f"not a gzip file, or a truncated one ({exc})"
        ) from None


def parse_int(path: Path, line: int, field: str, text: str, *, minimum: int) -> int:
    """An integer field at least ``minimum``; the error names where and why."""
    try:
        value = int(text.strip())
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise InputFormatError(path, line, field, f"not an integer: {text!r}") from None
        if not as_float.is_integer():
            raise InputFormatError(path, line, field, f"not an integer: {text!r}") from None
        value = int(as_float)
    if value < minimum:
        raise InputFormatError(path, line, field, f"must be >= {minimum}, got {value}")
    return value


def parse_float(path: Path, line: int, field: str, text: str, *, minimum: float) -> float:
    """A finite float field at least ``minimum``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputFormatError(path, line, field, f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputFormatError(path, line, field, f"not a finite number: {text!r}")
    if value < minimum:
        raise InputFormatError(path, line, field, f"must be >= {minimum}, got {value}")
    return value


@dataclass
class RowReport:
    """What a reader skipped; becomes the workload's ``notes``."""

    num_skipped: int = 0
    first_error: str | None = None

    def notes(self) -> tuple[str, ...]:
        if not self.num_skipped:
            return ()
        return (f"skipped {self.num_skipped} malformed rows (first: {self.first_error})",)


def parse_rows(
    rows: Iterable[tuple[int, T]],
    parse: Callable[[int, T], tuple[float, int, int, tuple[int, ...] | None] | None],
    *,
    skip_bad: bool,
    report: RowReport,
) -> Iterator[tuple[float, int, int, tuple[int, ...] | None]]:
    """Apply ``parse`` to ``(line_number, raw_row)`` pairs.

    ``parse`` returns ``(arrival_s, prompt_tokens, output_tokens, prefix_hashes)`` or ``None`` for
    a row the format says to leave out (the caller counts those). A malformed row stops the read
    with its ``InputFormatError``, unless ``skip_bad``: then it is counted in ``report``.
    """
    for line, raw in rows:
        try:
            parsed = parse(line, raw)
        except InputFormatError as exc:
            if not skip_bad:
                raise
            report.num_skipped += 1
            if report.first_error is None:
                report.first_error = str(exc)
            continue
        if parsed is not None:
            yield parsed
