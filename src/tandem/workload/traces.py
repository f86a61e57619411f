"""Readers of public trace formats into a ``Workload``.

- Azure LLM inference trace 2023 (Splitwise): CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``.
- Mooncake (FAST'25): JSONL ``{"timestamp" (ms), "input_length", "output_length", "hash_ids"}``.
- BurstGPT: CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``.
  Its documentation says failed requests are logged with ``Response tokens`` = 0 (the authors
  also publish "without fails" files that drop them). Such rows never produced output, so they
  are left out of the request stream and their count is recorded in the workload's notes.

Every reader returns arrivals relative to the first request (the first arrives at 0 s).
A malformed row stops the read with an error naming file, line and field, unless ``skip_bad``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tandem.errors import InputFormatError
from tandem.workload._rows import RowReport, open_text, parse_float, parse_int, parse_rows
from tandem.workload.request import Request, Workload

Parsed = tuple[float, int, int, tuple[int, ...] | None]


def _csv_rows(path: Path, expected: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputFormatError(path, 1, None, "empty file, expected a header")
        header = [h.strip() for h in header]
        missing = [c for c in expected if c not in header]
        if missing:
            raise InputFormatError(
                path, 1, missing[0], f"missing column; header is {','.join(header)}"
            )
        index = {c: header.index(c) for c in expected}
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield line, {"__error__": f"expected {len(header)} fields, found {len(row)}"}
                continue
            yield line, {c: row[i] for c, i in index.items()}


def _to_workload(name: str, parsed: list[Parsed], notes: tuple[str, ...]) -> Workload:
    parsed.sort(key=lambda p: p[0])
    t0 = parsed[0][0] if parsed else 0.0
    requests = tuple(
        Request(i, a - t0, p, o, prefix_hashes=h) for i, (a, p, o, h) in enumerate(parsed)
    )
    return Workload(name, requests, notes)


def _parse_azure_time(path: Path, line: int, text: str) -> float:
    # "2023-11-16 18:17:03.9799600": seven fractional digits, which datetime cannot take whole.
    stem, _, frac = text.strip().partition(".")
    try:
        parsed = datetime.strptime(stem, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        whole = parsed.timestamp()
        return whole + (float("0." + frac) if frac else 0.0)
    except ValueError:
        raise InputFormatError(
            path, line, "TIMESTAMP", f"not a 'YYYY-MM-DD HH:MM:SS[.fffffff]' time: {text!r}"
        ) from None


def read_azure(path: str | Path, *, name: str | None = None, skip_bad: bool = False) -> Workload:
    """Azure LLM inference trace 2023 CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    p = Path(path)
    report = RowReport()

    def parse(line: int, row: dict[str, str]) -> Parsed:
        if "__error__" in row:
            raise InputFormatError(p, line, None, row["__error__"])
        arrival = _parse_azure_time(p, line, row["TIMESTAMP"])
        prompt = parse_int(p, line, "ContextTokens", row["ContextTokens"], minimum=1)
        output = parse_int(p, line, "GeneratedTokens", row["GeneratedTokens"], minimum=1)
        return arrival, prompt, output, None

    rows = _csv_rows(p, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    parsed = list(parse_rows(rows, parse, skip_bad=skip_bad, report=report))
    return _to_workload(name or p.name, parsed, report.notes())


def read_mooncake(path: str | Path, *, name: str | None = None, skip_bad: bool = False) -> Workload:
    """Mooncake JSONL: ``timestamp`` in ms, ``input_length``, ``output_length``, ``hash_ids``."""
    p = Path(path)
    report = RowReport()

    def lines() -> Iterator[tuple[int, str]]:
        with open_text(p) as fh:
            for number, text in enumerate(fh, start=1):
                if text.strip():
                    yield number, text

    def parse(line: int, text: str) -> Parsed:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFormatError(p, line, None, f"not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputFormatError(p, line, None, "expected a JSON object")
        for key in ("timestamp", "input_length", "output_length"):
            if key not in obj:
                raise InputFormatError(p, line, key, "missing")
        arrival_ms = parse_float(p, line, "timestamp", obj["timestamp"], minimum=0.0)
        prompt = parse_int(p, line, "input_length", str(obj["input_length"]), minimum=1)
        output = parse_int(p, line, "output_length", str(obj["output_length"]), minimum=1)
        hashes = obj.get("hash_ids")
        if hashes is not None and (
            not isinstance(hashes, list) or not all(isinstance(h, int) for h in hashes)
        ):
            raise InputFormatError(p, line, "hash_ids", "expected a list of integers")
        return arrival_ms / 1000.0, prompt, output, tuple(hashes) if hashes is not None else None

    parsed = list(parse_rows(lines(), parse, skip_bad=skip_bad, report=report))
    return _to_workload(name or p.name, parsed, report.notes())


BURSTGPT_COLUMNS = [
    "Timestamp",
    "Model",
    "Request tokens",
    "Response tokens",
    "Total tokens",
    "Log Type",
]


def read_burstgpt(
    path: str | Path,
    *,
    name: str | None = None,
    skip_bad: bool = False,
    model: str | None = None,
) -> Workload:
    """BurstGPT CSV; failed requests (``Response tokens`` = 0) are left out and counted.

    ``model`` keeps only rows of that model (e.g. ``ChatGPT`` or ``GPT-4``).
    """
    p = Path(path)
    report = RowReport()
    num_failed = 0
    num_other_model = 0

    def parse(line: int, row: dict[str, str]) -> Parsed | None:
        nonlocal num_failed, num_other_model
        if "__error__" in row:
            raise InputFormatError(p, line, None, row["__error__"])
        arrival = parse_float(p, line, "Timestamp", row["Timestamp"], minimum=0.0)
        prompt = parse_int(p, line, "Request tokens", row["Request tokens"], minimum=0)
        output = parse_int(p, line, "Response tokens", row["Response tokens"], minimum=0)
        total = parse_int(p, line, "Total tokens", row["Total tokens"], minimum=0)
        if total != prompt + output:
            raise InputFormatError(
                p, line, "Total tokens", f"{total} != Request tokens + Response tokens"
            )
        if model is not None and row["Model"].strip() != model:
            num_other_model += 1
            return None
        if output == 0:
            num_failed += 1
            return None
        if prompt == 0:
            raise InputFormatError(p, line, "Request tokens", "must be >= 1 for a served request")
        return arrival, prompt, output, None

    parsed = list(
        parse_rows(_csv_rows(p, BURSTGPT_COLUMNS), parse, skip_bad=skip_bad, report=report)
    )
    notes = list(report.notes())
    if num_failed:
        notes.append(f"left out {num_failed} failed requests (Response tokens = 0)")
    if num_other_model:
        notes.append(f"left out {num_other_model} requests of models other than {model}")
    return _to_workload(name or p.name, parsed, tuple(notes))
