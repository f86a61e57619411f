"""ServeGen's DeepSeek-R1 reasoning workload: read its per-client window statistics and sample a
request stream from them.

ServeGen (Xiang et al., arXiv 2505.09999; github.com/alibaba/ServeGen, Apache-2.0) publishes no
per-request trace for DeepSeek-R1, only a statistical description of each client:

- ``chunk-<id>-trace.csv``, one row per 600-s window of one day: ``window_start_s, rate, cv,
  pattern, arg1, arg2``. ``rate * 600`` is the window's request count; ``pattern`` is the family
  fitted to the window's inter-arrival times (``Gamma`` or ``Weibull``; empty: the client is
  idle), ``arg1`` its shape and ``arg2`` its scale.
- ``chunk-<id>-dataset.json``, per 6-h window: PDFs of input tokens, output tokens (reasoning
  included) and reasoning ratio, as Python dict literals ``{value: probability}``.

How a stream is sampled (ServeGen's ``generate_workload`` and ``_sample_iats``, with each client
held at its own trace rate, i.e. ServeGen's ``rate_fn`` set to the sum of the clients' rates):

1. One ``numpy`` Generator; clients in ascending id; each client's active windows in time order.
2. An active window gets n = ceil(rate * 600) requests: the trace's own count.
3. Gaps are drawn from the fitted family with the window's shape and rescaled to fill the
   window, so the shape sets the burstiness and the count sets the rate. The fitted scale
   cancels in the rescaling (it does in ServeGen too).
4. Each request draws its input and its output length from the client's PDFs of the latest 6-h
   window at or before the request's 10-min window that has them (windows with empty PDFs are
   skipped, as in ServeGen). Lengths of 0 are raised to 1 and counted in the notes.
5. Requests outside ``[start_s, start_s + duration_s)`` are dropped; arrivals are relative to
   ``start_s``.

Where this departs from ServeGen's code, and why:

- ServeGen draws n gaps and keeps the arrivals before the window's end; the n-th lands on the
  end (up to rounding) and is dropped, so every window loses a request. Here n + 1 gaps are
  drawn and the first n cumulative sums kept: exactly the trace's count.
- ServeGen draws one uniform number per request for all fields, which makes input length,
  output length and reasoning ratio perfectly rank-correlated. The data are marginal PDFs; they
  are sampled independently here.
- A span that cuts a window keeps the part of the whole window's sample that falls inside
  (ServeGen squeezes ceil(rate * part) requests into the part).

``reason_ratio`` (the share of output tokens that are reasoning) is read and packaged but not
sampled: ``Request.output_tokens`` is the whole output, reasoning included, which is what a
decode instance generates.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tandem.errors import ConfigError, InputFormatError
from tandem.workload._rows import open_text, parse_float
from tandem.workload.request import Workload, workload_from_arrays

PATTERNS = ("Gamma", "Weibull")
LENGTH_FIELDS = ("input_tokens", "output_tokens")
RATIO_FIELD = "reason_ratio"
PACKED_FORMAT = "tandem-servegen/1"
# Hour 4-5 of the trace's day: 61,349 requests (17.0 req/s; the day's mean is 16.0) whose output
# lengths match the whole day's (mean 1521 vs 1527 tokens, p99 12,050 vs 12,607).
DEFAULT_START_S = 4 * 3600.0
DEFAULT_DURATION_S = 3600.0
_TRACE_FIELDS = (
    "window_start_s",
    "rate_req_per_s",
    "cv_of_interarrival",
    "pattern",
    "arg1",
    "arg2",
)
_CHUNK_FILE = re.compile(r"^chunk-(\d+)-(trace\.csv|dataset\.json)$")
_PDF_SUM_TOLERANCE = 1e-6
_WINDOW_COLUMNS = ("start_s", "rate_req_per_s", "cv", "pattern", "shape", "scale")


def packaged_path() -> Path:
    """The packaged copy of ServeGen's ``data/reason/deepseek-r1`` (see its README)."""
    data = resources.files("tandem.workload").joinpath("data", "servegen_r1", "servegen_r1.json.gz")
    return Path(str(data))


@dataclass(frozen=True, slots=True, eq=False)  # numpy fields: identity, not value, equality
class Pdf:
    """A discrete distribution: sorted ``values``, their ``probs`` (sum 1) and running ``cdf``."""

    values: np.ndarray
    probs: np.ndarray
    cdf: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # side="right" with cdf[-1] == 1 > u: never past the end, never a zero-probability value.
        return self.values[np.searchsorted(self.cdf, rng.random(n), side="right")]


@dataclass(frozen=True, slots=True)
class TraceWindow:
    """One active 10-min window of one client: its rate and fitted inter-arrival family."""

    start_s: float
    rate_req_per_s: float
    cv: float
    pattern: str
    shape: float
    scale: float


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client: its active windows in time order, its length PDFs by 6-h window start."""

    client_id: int
    windows: tuple[TraceWindow, ...]
    pdfs_by_start_s: dict[float, dict[str, Pdf]]

    def pdfs_at(self, t_s: float) -> dict[str, Pdf] | None:
        """The PDFs of the latest dataset window starting at or before ``t_s``."""
        starts = [s for s in self.pdfs_by_start_s if s <= t_s]
        return self.pdfs_by_start_s[max(starts)] if starts else None


@dataclass(frozen=True, eq=False)
class ServeGenData:
    """All clients of one ServeGen model on a common grid of ``num_windows`` windows."""

    window_s: float
    num_windows: int
    clients: dict[int, ClientData]

    @property
    def day_s(self) -> float:
        return self.window_s * self.num_windows


def load_servegen(
    path: str | Path | None = None,
    *,
    start_s: float = DEFAULT_START_S,
    duration_s: float = DEFAULT_DURATION_S,
    clients: Sequence[int] | None = None,
    seed: int = 0,
    name: str = "servegen-r1",
) -> Workload:
    """Sample ServeGen requests arriving in ``[start_s, start_s + duration_s)`` of the day.

    ``path``: None for the packaged DeepSeek-R1 data, a packed ``*.json.gz`` file, or a directory
    in ServeGen's layout (``chunk-<id>-trace.csv`` and ``chunk-<id>-dataset.json``). ``clients``:
    client ids (None: all). The same data, span, clients and seed give the same stream.
    """
    data = read_servegen(path)
    return sample_servegen(
        data, start_s=start_s, duration_s=duration_s, clients=clients, seed=seed, name=name
    )


def sample_servegen(
    data: ServeGenData,
    *,
    start_s: float = DEFAULT_START_S,
    duration_s: float = DEFAULT_DURATION_S,
    clients: Sequence[int] | None = None,
    seed: int = 0,
    name: str = "servegen-r1",
) -> Workload:
    """Sample a request stream from already-read data (see the module docstring for how)."""
    end_s = _check_span(data, start_s, duration_s)
    ids = _check_clients(data, clients)
    rng = np.random.default_rng(seed)
    arrivals, prompts, outputs = [], [], []
    for cid in ids:
        client = data.clients[cid]
        for window in client.windows:
            if window.start_s + data.window_s <= start_s or window.start_s >= end_s:
                continue
            t_s = _window_arrivals_s(window, data.window_s, rng)
            t_s = t_s[(t_s >= start_s) & (t_s < end_s)]
            pdfs = client.pdfs_at(window.start_s)
            assert pdfs is not None  # the readers refuse active windows without PDFs
            arrivals.append(t_s - start_s)
            prompts.append(pdfs["input_tokens"].sample(rng, t_s.size))
            outputs.append(pdfs["output_tokens"].sample(rng, t_s.size))
    arr = np.concatenate(arrivals) if arrivals else np.zeros(0)
    pin = np.concatenate(prompts) if prompts else np.zeros(0, np.int64)
    out = np.concatenate(outputs) if outputs else np.zeros(0, np.int64)
    num_raised = int(np.count_nonzero(pin < 1) + np.count_nonzero(out < 1))
    notes = [
        f"ServeGen sample: {len(ids)} of {len(data.clients)} clients, "
        f"span [{start_s:g}, {end_s:g}) s of a {data.day_s:g}-s day, seed {seed}",
        "output_tokens include reasoning tokens (reason_ratio is not sampled)",
    ]
    if num_raised:
        notes.append(f"{num_raised} sampled lengths of 0 tokens raised to 1")
    return workload_from_arrays(
        name, arr, np.maximum(pin, 1), np.maximum(out, 1), notes=tuple(notes)
    )


def _check_span(data: ServeGenData, start_s: float, duration_s: float) -> float:
    end_s = start_s + duration_s
    if not (math.isfinite(start_s) and math.isfinite(duration_s)) or duration_s <= 0:
        raise ConfigError(
            f"span needs finite start_s and duration_s > 0, got {start_s}, {duration_s}"
        )
    if start_s < 0 or end_s > data.day_s + 1e-9:
        raise ConfigError(
            f"span [{start_s:g}, {end_s:g}) s is outside the trace's day [0, {data.day_s:g}) s"
        )
    return end_s


def _check_clients(data: ServeGenData, clients: Sequence[int] | None) -> list[int]:
    if clients is None:
        return sorted(data.clients)
    ids = sorted({int(c) for c in clients})
    if not ids:
        raise ConfigError("no ServeGen clients selected")
    unknown = [c for c in ids if c not in data.clients]
    if unknown:
        raise ConfigError(
            f"unknown ServeGen client id(s) {_ranges(unknown)}; "
            f"valid ids: {_ranges(sorted(data.clients))}"
        )
    return ids


def _ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts: list[str] = []
    for i in ids:
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)


def _num_requests(expected: float) -> int:
    # rate * 600 is an integer count in the data; keep float noise from adding a request.
    nearest = round(expected)
    return int(nearest) if abs(expected - nearest) < 1e-6 else math.ceil(expected)


def _window_arrivals_s(
    window: TraceWindow, window_s: float, rng: np.random.Generator
) -> np.ndarray:
    """The trace's count of arrivals in one window, gaps shaped by the fitted family."""
    n = _num_requests(window.rate_req_per_s * window_s)
    if window.pattern == "Gamma":
        gaps = rng.gamma(window.shape, 1.0, n + 1)
    else:
        gaps = rng.weibull(window.shape, n + 1)
    total = float(gaps.sum())
    if not total > 0:  # every gap underflowed (tiny Gamma shapes): spread evenly
        gaps, total = np.ones(n + 1), float(n + 1)
    t_s = window.start_s + window_s * (np.cumsum(gaps[:-1]) / total)
    # A last gap that underflowed would put arrivals on the next window's start.
    return np.minimum(t_s, np.nextafter(window.start_s + window_s, -np.inf))


def read_servegen(path: str | Path | None = None) -> ServeGenData:
    """Read a ServeGen directory (upstream layout) or a packed file; None: the packaged one."""
    p = packaged_path() if path is None else Path(path)
    if p.is_dir():
        return _read_directory(p)
    return _read_packed(p)


def make_pdf(
    path: Path, line: int | None, field: str, values: Any, probs: Any, *, integer: bool
) -> Pdf:
    """Check and normalise a PDF given as parallel value/probability sequences."""
    try:
        v = np.asarray(values, dtype=float)
        p = np.asarray(probs, dtype=float)
    except (TypeError, ValueError):
        raise InputFormatError(
            path, line, field, "values and probabilities must be numbers"
        ) from None
    if v.ndim != 1 or v.shape != p.shape or v.size == 0:
        raise InputFormatError(path, line, field, "expected equally long, non-empty lists")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(p))):
        raise InputFormatError(path, line, field, "values and probabilities must be finite")
    if np.any(p < 0):
        raise InputFormatError(path, line, field, "negative probability")
    if integer and (np.any(v < 0) or np.any(v != np.round(v))):
        raise InputFormatError(path, line, field, "token counts must be integers >= 0")
    total = float(p.sum())
    if abs(total - 1.0) > _PDF_SUM_TOLERANCE:
        raise InputFormatError(path, line, field, f"probabilities sum to {total:.9g}, expected 1")
    order = np.argsort(v, kind="stable")
    v, p = v[order], p[order] / total
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    return Pdf(v.astype(np.int64) if integer else v, p, cdf)


def _read_directory(directory: Path) -> ServeGenData:
    ids = sorted({int(m[1]) for f in directory.iterdir() if (m := _CHUNK_FILE.match(f.name))})
    if not ids:
        raise InputFormatError(directory, None, None, "no chunk-<id>-trace.csv files")
    clients: dict[int, ClientData] = {}
    grid: tuple[float, int, str] | None = None
    for cid in ids:
        trace_path = directory / f"chunk-{cid}-trace.csv"
        dataset_path = directory / f"chunk-{cid}-dataset.json"
        for p in (trace_path, dataset_path):
            if not p.is_file():
                raise InputFormatError(p, None, None, "missing (needed for every client)")
        window_s, num_windows, windows = _read_trace(trace_path)
        if grid is None:
            grid = (window_s, num_windows, trace_path.name)
        elif (window_s, num_windows) != grid[:2]:
            why = f"{num_windows} x {window_s:g} s windows, {grid[2]} has {grid[1]} x {grid[0]:g} s"
            raise InputFormatError(trace_path, None, "window_start_s", why)
        clients[cid] = make_client(dataset_path, cid, windows, _read_dataset(dataset_path))
    assert grid is not None
    return ServeGenData(grid[0], grid[1], clients)


def make_client(
    path: Path,
    client_id: int,
    windows: tuple[TraceWindow, ...],
    pdfs_by_start_s: dict[float, dict[str, Pdf]],
) -> ClientData:
    """A client, refusing an active window that has no length PDFs to draw from."""
    client = ClientData(client_id, windows, pdfs_by_start_s)
    for w in windows:
        if client.pdfs_at(w.start_s) is None:
            why = f"client {client_id} is active at {w.start_s:g} s but no dataset window before"
            raise InputFormatError(path, None, None, f"{why} has length PDFs")
    return client


def _read_trace(path: Path) -> tuple[float, int, tuple[TraceWindow, ...]]:
    """Window length, number of windows and active windows of one ``chunk-<id>-trace.csv``."""
    starts: list[float] = []
    active: list[TraceWindow] = []
    with open_text(path) as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            cells = raw.rstrip("\r\n").split(",")
            if len(cells) != len(_TRACE_FIELDS):
                why = f"expected 6 fields ({', '.join(_TRACE_FIELDS)}), found {len(cells)}"
                raise InputFormatError(path, line, None, why)
            start, rate, cv = (
                parse_float(path, line, f, c, minimum=0.0)
                for f, c in zip(_TRACE_FIELDS[:3], cells[:3], strict=True)
            )
            pattern = cells[3].strip()
            if pattern not in ("", *PATTERNS):
                why = f"expected Gamma, Weibull or empty (idle), got {pattern!r}"
                raise InputFormatError(path, line, "pattern", why)
            shape, scale = (
                parse_float(path, line, f, c, minimum=0.0)
                for f, c in zip(_TRACE_FIELDS[4:], cells[4:], strict=True)
            )
            _check_grid(path, line, starts, start)
            starts.append(start)
            if not pattern:  # idle, whatever the other fields say (as in ServeGen)
                continue
            for field, value in (("rate_req_per_s", rate), ("arg1", shape), ("arg2", scale)):
                if value <= 0:
                    why = f"must be > 0 in an active ({pattern}) window, got {value:g}"
                    raise InputFormatError(path, line, field, why)
            active.append(TraceWindow(start, rate, cv, pattern, shape, scale))
    if len(starts) < 2:
        raise InputFormatError(path, None, None, "needs at least 2 windows to define their length")
    return starts[1] - starts[0], len(starts), tuple(active)


def _check_grid(path: Path, line: int, starts: list[float], start: float) -> None:
    """Windows start at 0 and follow each other at the step set by the first two."""
    if not starts:
        ok, want = start == 0, "0"
    elif len(starts) == 1:
        ok, want = start > starts[0], f"a start after {starts[0]:g}"
    else:
        expected = starts[0] + len(starts) * (starts[1] - starts[0])
        ok, want = abs(start - expected) <= 1e-6, f"{expected:g} (regular windows)"
    if not ok:
        raise InputFormatError(path, line, "window_start_s", f"expected {want}, got {start:g}")


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _read_dataset(path: Path) -> dict[float, dict[str, Pdf]]:
    """Length PDFs by 6-h window start of one ``chunk-<id>-dataset.json``."""
    with open_text(path) as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, None, f"not JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise InputFormatError(path, 1, None, "expected an object {window_start_s: {field: pdf}}")
    pdfs_by_start_s: dict[float, dict[str, Pdf]] = {}
    for key, fields in doc.items():
        key_at = max(text.find(f'"{key}"'), 0)
        line = _line_at(text, key_at)
        start = parse_float(path, line, "window_start_s", key, minimum=0.0)
        if not isinstance(fields, dict):
            raise InputFormatError(path, line, key, "expected an object {field: pdf}")
        pdfs: dict[str, Pdf] = {}
        for field in (*LENGTH_FIELDS, RATIO_FIELD):
            where = f"{key}.{field}"
            if field not in fields:
                if field == RATIO_FIELD:
                    continue
                raise InputFormatError(path, line, where, "missing")
            field_line = _line_at(text, max(text.find(f'"{field}"', key_at), key_at))
            pdf = _parse_pdf_literal(
                path, field_line, where, fields[field], integer=field != RATIO_FIELD
            )
            if pdf is not None:
                pdfs[field] = pdf
        if all(f in pdfs for f in LENGTH_FIELDS):  # ServeGen skips windows with empty PDFs
            pdfs_by_start_s[start] = pdfs
    return pdfs_by_start_s


def _parse_pdf_literal(
    path: Path, line: int, field: str, raw: object, *, integer: bool
) -> Pdf | None:
    """A PDF stored as a Python dict literal ``"{value: probability, ...}"``; None if empty."""
    parsed: object = raw
    if isinstance(raw, str):
        try:
            parsed = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
    if not isinstance(parsed, dict):
        why = "expected a string holding a Python dict {value: probability, ...}"
        raise InputFormatError(path, line, field, why)
    if not parsed:
        return None
    return make_pdf(path, line, field, list(parsed.keys()), list(parsed.values()), integer=integer)


def _read_packed(path: Path) -> ServeGenData:
    """A file written by ``scripts/pack_servegen.py`` (layout in ``packed_document``)."""
    with open_text(path) as fh:
        try:
            doc = json.load(fh)
        except (json.JSONDecodeError, OSError, EOFError) as exc:
            raise InputFormatError(path, None, None, f"not a packed ServeGen file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != PACKED_FORMAT:
        raise InputFormatError(path, None, "format", f"expected a {PACKED_FORMAT!r} document")
    try:
        clients: dict[int, ClientData] = {}
        for c in doc["clients"]:
            cid, w = int(c["id"]), c["windows"]
            windows = tuple(
                TraceWindow(float(s), float(r), float(v), str(p), float(a), float(b))
                for s, r, v, p, a, b in zip(*(w[k] for k in _WINDOW_COLUMNS), strict=True)
            )
            pdfs_by_start_s: dict[float, dict[str, Pdf]] = {}
            for d in c["pdfs"]:
                pdfs_by_start_s[float(d["start_s"])] = {
                    f: make_pdf(
                        path,
                        None,
                        f"clients[{cid}].{f}",
                        d[f]["values"],
                        d[f]["probs"],
                        integer=f != RATIO_FIELD,
                    )
                    for f in (*LENGTH_FIELDS, RATIO_FIELD)
                    if f in d
                }
            clients[cid] = make_client(path, cid, windows, pdfs_by_start_s)
        return ServeGenData(float(doc["window_s"]), int(doc["num_windows"]), clients)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFormatError(path, None, None, f"malformed packed file: {exc!r}") from None


def packed_document(
    data: ServeGenData, source: dict[str, str], significant_digits: int = 8
) -> dict[str, Any]:
    """The JSON document ``_read_packed`` reads: columns of active windows, sparse PDFs.

    Zero-probability entries are dropped (never sampled) and probabilities rounded to
    ``significant_digits`` (renormalised when read), which keeps the file small.
    """

    def rounded(x: np.ndarray) -> list[float]:
        return [float(f"{v:.{significant_digits}g}") for v in x.tolist()]

    def pdf_doc(pdf: Pdf) -> dict[str, list[Any]]:
        keep = pdf.probs > 0
        values = pdf.values[keep]
        return {
            "values": values.tolist() if values.dtype.kind == "i" else rounded(values),
            "probs": rounded(pdf.probs[keep]),
        }

    clients = []
    for cid in sorted(data.clients):
        c = data.clients[cid]
        clients.append(
            {
                "id": cid,
                "windows": {k: [getattr(w, k) for w in c.windows] for k in _WINDOW_COLUMNS},
                "pdfs": [
                    {"start_s": s, **{f: pdf_doc(p) for f, p in pdfs.items()}}
                    for s, pdfs in sorted(c.pdfs_by_start_s.items())
                ],
            }
        )
    return {
        "format": PACKED_FORMAT,
        "source": source,
        "window_s": data.window_s,
        "num_windows": data.num_windows,
        "clients": clients,
    }
