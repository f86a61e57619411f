"""ServeGen DeepSeek-R1 reader and sampler: packaged data, upstream layout, sampling semantics."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tandem.errors import ConfigError, InputFormatError
from tandem.workload.servegen import (
    DEFAULT_DURATION_S,
    DEFAULT_START_S,
    ServeGenData,
    load_servegen,
    packed_document,
    read_servegen,
    sample_servegen,
)


@pytest.fixture(scope="module")
def packaged() -> ServeGenData:
    return read_servegen()


def _expected_count(data: ServeGenData, start_s: float, end_s: float, ids=None) -> float:
    """Sum over active windows of rate x (overlap of the window with the span)."""
    total = 0.0
    for cid, c in data.clients.items():
        if ids is not None and cid not in ids:
            continue
        for w in c.windows:
            overlap = min(w.start_s + data.window_s, end_s) - max(w.start_s, start_s)
            total += w.rate_req_per_s * max(overlap, 0.0)
    return total


def _output_mixture(data: ServeGenData, start_s: float, end_s: float) -> tuple[float, float]:
    """Mean and p99 of output tokens over the span's windows, each weighted by its requests."""
    weight: dict[int, float] = {}
    for c in data.clients.values():
        for w in c.windows:
            if start_s <= w.start_s < end_s:
                pdf = c.pdfs_at(w.start_s)["output_tokens"]
                for v, p in zip(pdf.values.tolist(), pdf.probs.tolist(), strict=True):
                    weight[v] = weight.get(v, 0.0) + p * w.rate_req_per_s
    values = np.array(sorted(weight))
    probs = np.array([weight[v] for v in values.tolist()])
    cdf = np.cumsum(probs) / probs.sum()
    return float(np.dot(values, probs) / probs.sum()), float(values[np.searchsorted(cdf, 0.99)])


# --- packaged data --------------------------------------------------------------------------


def test_packaged_file_holds_the_whole_deepseek_r1_day(packaged: ServeGenData) -> None:
    """The packaged file has ServeGen's 73 clients, 144 windows of 600 s and 1,383,669 requests."""
    assert sorted(packaged.clients) == list(range(73))
    assert (packaged.window_s, packaged.num_windows) == (600.0, 144)
    assert round(_expected_count(packaged, 0.0, packaged.day_s)) == 1_383_669
    patterns = [w.pattern for c in packaged.clients.values() for w in c.windows]
    assert (patterns.count("Gamma"), patterns.count("Weibull")) == (2589, 522)


def test_default_workload_is_one_busy_hour_with_the_long_output_tail() -> None:
    """load_servegen() with no arguments gives tens of thousands of requests in [0, 3600) s."""
    w = load_servegen()
    assert w.name == "servegen-r1"
    assert 30_000 < len(w) < 100_000
    arrivals = w.arrivals_s
    assert arrivals.min() >= 0.0 and arrivals.max() < DEFAULT_DURATION_S
    out = w.output_tokens
    assert 1300 < out.mean() < 1750
    assert 10_000 < np.percentile(out, 99) < 14_500
    assert w.prompt_tokens.min() >= 1 and out.min() >= 1


# --- sampling semantics ---------------------------------------------------------------------


def test_same_seed_same_stream_and_different_seeds_differ(packaged: ServeGenData) -> None:
    """A seed fixes arrivals and lengths; another seed changes them."""
    kwargs = {"start_s": 36_000.0, "duration_s": 1200.0}
    a = sample_servegen(packaged, seed=7, **kwargs)
    b = sample_servegen(packaged, seed=7, **kwargs)
    c = sample_servegen(packaged, seed=8, **kwargs)
    assert np.array_equal(a.arrivals_s, b.arrivals_s)
    assert np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert np.array_equal(a.output_tokens, b.output_tokens)
    assert len(a) == len(c)  # whole windows: the count is the trace's
    assert not np.array_equal(a.arrivals_s, c.arrivals_s)
    assert not np.array_equal(a.output_tokens, c.output_tokens)


def test_whole_windows_get_exactly_the_trace_count(packaged: ServeGenData) -> None:
    """A span of whole windows holds sum(rate x 600) requests over its active windows."""
    w = sample_servegen(packaged, start_s=7200.0, duration_s=3600.0, seed=1)
    assert len(w) == round(_expected_count(packaged, 7200.0, 10_800.0))


def test_span_cutting_windows_is_close_to_rate_times_overlap(packaged: ServeGenData) -> None:
    """Cut windows keep their share of requests: within 5% of sum(rate x overlap) (bursty)."""
    start_s, duration_s = 50_123.4, 1000.0
    expected = _expected_count(packaged, start_s, start_s + duration_s)
    for seed in (0, 1):
        got = len(sample_servegen(packaged, start_s=start_s, duration_s=duration_s, seed=seed))
        assert abs(got - expected) < 0.05 * expected


def test_output_lengths_follow_the_span_pdfs(packaged: ServeGenData) -> None:
    """Sampled output mean within 4% and p99 within 10% of the span's PDF mixture."""
    end_s = DEFAULT_START_S + DEFAULT_DURATION_S
    mean, p99 = _output_mixture(packaged, DEFAULT_START_S, end_s)
    out = sample_servegen(packaged, seed=3).output_tokens
    assert out.mean() == pytest.approx(mean, rel=0.04)
    assert np.percentile(out, 99) == pytest.approx(p99, rel=0.10)


def test_client_selection_keeps_only_those_clients(packaged: ServeGenData) -> None:
    """clients=[...] samples only those clients' windows, whatever their order or repeats."""
    ids = [9, 1, 1]
    w = sample_servegen(packaged, start_s=0.0, duration_s=packaged.day_s, clients=ids)
    assert len(w) == round(_expected_count(packaged, 0.0, packaged.day_s, ids={1, 9}))
    assert "2 of 73 clients" in w.notes[0]
    same = sample_servegen(packaged, start_s=0.0, duration_s=packaged.day_s, clients=[1, 9])
    assert np.array_equal(w.arrivals_s, same.arrivals_s)


def test_unknown_client_is_a_config_error_listing_valid_ids(packaged: ServeGenData) -> None:
    """An unknown client id names itself and the valid ids."""
    with pytest.raises(ConfigError, match=r"unknown ServeGen client id\(s\) 73.*valid ids: 0-72"):
        sample_servegen(packaged, clients=[3, 73])
    with pytest.raises(ConfigError, match="no ServeGen clients"):
        sample_servegen(packaged, clients=[])


@pytest.mark.parametrize(
    ("start_s", "duration_s"), [(-1.0, 600.0), (86_000.0, 600.0), (0.0, 0.0), (float("nan"), 1.0)]
)
def test_span_outside_the_day_is_a_config_error(
    packaged: ServeGenData, start_s: float, duration_s: float
) -> None:
    """Spans must lie within [0, 86400) s and be non-empty."""
    with pytest.raises(ConfigError, match="span"):
        sample_servegen(packaged, start_s=start_s, duration_s=duration_s)


# --- ServeGen's directory layout ------------------------------------------------------------

TRACE_ROWS = [
    "0,0,0,,0,0",
    "600,0.05,2.0,Gamma,0.25,80.0",
    "1200,0.1,0.9,Weibull,1.1,10.0",
    "1800,0,0,,0,0",
]
DATASET = {
    "0": {
        "input_tokens": "{0: 0.5, 100: 0.5}",
        "output_tokens": "{10: 0.25, 1000: 0.75}",
        "reason_ratio": "{0.0: 0.5, 0.5: 0.5}",
    },
    "1200": {"input_tokens": "{}", "output_tokens": "{}", "reason_ratio": "{}"},
}


def _write_dir(root: Path, trace_rows=TRACE_ROWS, dataset=DATASET, clients=(0, 4)) -> Path:
    for cid in clients:
        (root / f"chunk-{cid}-trace.csv").write_text("\n".join(trace_rows) + "\n")
        (root / f"chunk-{cid}-dataset.json").write_text(json.dumps(dataset, indent=2))
    return root


def test_directory_in_upstream_layout_is_sampled(tmp_path: Path) -> None:
    """A ServeGen checkout's layout reads; empty 6-h windows fall back to the previous one."""
    w = load_servegen(_write_dir(tmp_path), start_s=0.0, duration_s=2400.0, seed=0)
    assert len(w) == 2 * (30 + 60)
    assert set(w.output_tokens.tolist()) <= {10, 1000}
    assert set(w.prompt_tokens.tolist()) <= {1, 100}  # 0 raised to 1, and counted
    assert any("raised to 1" in n for n in w.notes)
    with pytest.raises(ConfigError, match="valid ids: 0, 4"):
        load_servegen(tmp_path, start_s=0.0, duration_s=600.0, clients=[2])


def test_packed_file_samples_as_its_source_directory(tmp_path: Path) -> None:
    """Packing (scripts/pack_servegen.py's format) does not change what is sampled."""
    raw = tmp_path / "raw"
    raw.mkdir()
    data = read_servegen(_write_dir(raw))
    packed = tmp_path / "packed.json.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        json.dump(packed_document(data, {"repo": "test"}), fh)
    a = sample_servegen(data, start_s=0.0, duration_s=2400.0, seed=5)
    b = load_servegen(packed, start_s=0.0, duration_s=2400.0, seed=5)
    assert a.requests == b.requests


@pytest.mark.parametrize(
    ("line", "row", "field"),
    [
        (2, "600,fast,2.0,Gamma,0.25,80.0", "rate_req_per_s"),
        (2, "600,0.05,2.0,Pareto,0.25,80.0", "pattern"),
        (3, "1200,0.1,0.9,Weibull,0,10.0", "arg1"),
        (3, "1300,0.1,0.9,Weibull,1.1,10.0", "window_start_s"),
        (2, "600,0.05,2.0,Gamma,0.25", None),
    ],
)
def test_malformed_trace_row_names_file_line_and_field(
    tmp_path: Path, line: int, row: str, field: str | None
) -> None:
    """A bad trace row stops the read with an error naming file, line and field."""
    rows = list(TRACE_ROWS)
    rows[line - 1] = row
    _write_dir(tmp_path, trace_rows=rows, clients=(0,))
    with pytest.raises(InputFormatError) as info:
        load_servegen(tmp_path, start_s=0.0, duration_s=600.0)
    err = info.value
    assert (Path(err.path).name, err.line, err.field) == ("chunk-0-trace.csv", line, field)


@pytest.mark.parametrize(
    ("output_pdf", "message"),
    [
        ("{10: 0.25, 1000: 0.5}", "sum to 0.75"),
        ("[10, 1000]", "Python dict"),
        ("{10.5: 1.0}", "integers"),
        ("{10: -0.5, 1000: 1.5}", "negative"),
    ],
)
def test_malformed_pdf_names_file_line_and_field(
    tmp_path: Path, output_pdf: str, message: str
) -> None:
    """A bad PDF names the dataset file, the line of the field and window.field."""
    dataset = {"0": {**DATASET["0"], "output_tokens": output_pdf}}
    _write_dir(tmp_path, dataset=dataset, clients=(0,))
    with pytest.raises(InputFormatError, match=message) as info:
        load_servegen(tmp_path, start_s=0.0, duration_s=600.0)
    err = info.value
    assert (Path(err.path).name, err.line, err.field) == (
        "chunk-0-dataset.json",
        4,
        "0.output_tokens",
    )


def test_missing_partner_file_and_missing_pdfs_are_format_errors(tmp_path: Path) -> None:
    """A client needs both files, and every active window needs length PDFs."""
    _write_dir(tmp_path, clients=(0,))
    (tmp_path / "chunk-1-trace.csv").write_text("\n".join(TRACE_ROWS))
    with pytest.raises(InputFormatError, match="chunk-1-dataset.json: missing"):
        read_servegen(tmp_path)
    (tmp_path / "chunk-1-trace.csv").unlink()
    (tmp_path / "chunk-0-dataset.json").write_text(json.dumps({"1200": DATASET["0"]}))
    with pytest.raises(InputFormatError, match="active at 600 s but no dataset window"):
        read_servegen(tmp_path)
