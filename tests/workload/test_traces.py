"""Trace readers: parsing, malformed rows, --skip-bad, embedded workloads."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tandem.errors import InputFormatError, UnknownNameError
from tandem.workload import load_workload
from tandem.workload.traces import read_azure, read_burstgpt, read_mooncake

DATA = Path(__file__).parent.parent / "data"

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.0000000,10,1
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_azure_arrivals_are_relative_to_first_row_with_sub_microsecond_digits(
    tmp_path: Path,
) -> None:
    w = read_azure(write(tmp_path, "a.csv", AZURE))
    assert [r.prompt_tokens for r in w] == [374, 396, 10]
    assert [r.output_tokens for r in w] == [44, 109, 1]
    assert w[0].arrival_s == 0.0
    assert w[1].arrival_s == pytest.approx(50.9951690 - 46.6805900, abs=1e-6)
    assert [r.request_id for r in w] == [0, 1, 2]


def test_azure_reads_gzip_like_plain(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(AZURE.encode()))
    assert read_azure(path).requests == read_azure(write(tmp_path, "a.csv", AZURE)).requests


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("2023-11-16 18:15:52.0,abc,3", "ContextTokens"),
        ("2023-11-16 18:15:52.0,5,0", "GeneratedTokens"),
        ("yesterday,5,3", "TIMESTAMP"),
        ("2023-11-16 18:15:52.0,5,-2", "GeneratedTokens"),
    ],
)
def test_azure_bad_row_names_file_line_and_field(tmp_path: Path, row: str, field: str) -> None:
    path = write(tmp_path, "bad.csv", AZURE + row + "\n")
    with pytest.raises(InputFormatError) as info:
        read_azure(path)
    assert info.value.line == 5 and info.value.field == field
    assert str(path) in str(info.value) and "line 5" in str(info.value)


def test_azure_skip_bad_skips_and_counts(tmp_path: Path) -> None:
    text = AZURE + "2023-11-16 18:15:52.0,abc,3\n2023-11-16 18:15:53.0,5,3,9\n"
    w = read_azure(write(tmp_path, "bad.csv", text), skip_bad=True)
    assert len(w) == 3
    assert any("skipped 2 malformed rows" in n for n in w.notes)


def test_azure_wrong_field_count_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="line 5: expected 3 fields"):
        read_azure(write(tmp_path, "bad.csv", AZURE + "2023-11-16 18:15:53.0,5\n"))


def test_azure_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="'GeneratedTokens'"):
        read_azure(write(tmp_path, "bad.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:53.0,5\n"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no such file"):
        read_azure(tmp_path / "nope.csv")


MOONCAKE = (
    '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1]}\n'
    '{"timestamp": 1500, "input_length": 20, "output_length": 3, "hash_ids": [0, 2]}\n'
)


def test_mooncake_timestamps_are_milliseconds_and_hashes_kept(tmp_path: Path) -> None:
    w = read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE))
    assert [r.arrival_s for r in w] == [0.0, 1.5]
    assert w[1].prefix_hashes == (0, 2)
    assert (w[1].prompt_tokens, w[1].output_tokens) == (20, 3)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"timestamp": 5, "input_length": 1}', "output_length"),
        ('{"timestamp": 5, "input_length": "x", "output_length": 2}', "input_length"),
        ('{"timestamp": 5, "input_length": 3, "output_length": 2, "hash_ids": "x"}', "hash_ids"),
        ('{"timestamp": -1, "input_length": 3, "output_length": 2}', "timestamp"),
        ("{not json", None),
    ],
)
def test_mooncake_bad_line_names_line_and_field(
    tmp_path: Path, line: str, field: str | None
) -> None:
    with pytest.raises(InputFormatError) as info:
        read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE + line + "\n"))
    assert info.value.line == 3 and info.value.field == field


def test_mooncake_skip_bad(tmp_path: Path) -> None:
    w = read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE + "{bad\n"), skip_bad=True)
    assert len(w) == 2 and "skipped 1 malformed rows" in w.notes[0]


def test_burstgpt_failed_requests_are_left_out_and_counted() -> None:
    w = read_burstgpt(DATA / "burstgpt_sample.csv")
    assert len(w) == 6
    assert all(r.output_tokens > 0 for r in w)
    assert [r.arrival_s for r in w][:3] == [0.0, 113.0, 135.0]
    assert any("left out 2 failed requests" in n for n in w.notes)


def test_burstgpt_model_filter() -> None:
    w = read_burstgpt(DATA / "burstgpt_sample.csv", model="GPT-4")
    assert [r.prompt_tokens for r in w] == [417, 231]


def test_burstgpt_inconsistent_total_is_an_error(tmp_path: Path) -> None:
    text = (DATA / "burstgpt_sample.csv").read_text() + "300,ChatGPT,10,5,99,API log\n"
    with pytest.raises(InputFormatError) as info:
        read_burstgpt(write(tmp_path, "b.csv", text))
    assert info.value.field == "Total tokens" and info.value.line == 10


def test_path_format_detection(tmp_path: Path) -> None:
    assert len(load_workload(str(DATA / "burstgpt_sample.csv"))) == 6
    assert len(load_workload(str(write(tmp_path, "a.csv", AZURE)))) == 3
    assert len(load_workload(str(write(tmp_path, "m.jsonl", MOONCAKE)))) == 2
    with pytest.raises(InputFormatError, match="unknown CSV header"):
        load_workload(str(write(tmp_path, "x.csv", "a,b\n1,2\n")))


def test_unknown_name_lists_known_workloads() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_workload("azure-chat")
    assert "azure-conv" in str(info.value) and "mooncake-conv" in str(info.value)


@pytest.mark.parametrize(
    ("name", "count"), [("azure-conv", 19366), ("azure-code", 8819), ("mooncake-conv", 12031)]
)
def test_embedded_trace_counts(name: str, count: int) -> None:
    w = load_workload(name)
    assert len(w) == count and w[0].arrival_s == 0.0


# -- files a new user hands in by mistake (issue 18 item 6) ------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("binary.csv", bytes(range(256)) * 4, "not UTF-8 text"),
        ("latin1.jsonl", '{"timestamp": 0, "x": "caf\xe9"}\n'.encode("latin-1"), "not UTF-8"),
        ("fake.csv.gz", AZURE.encode(), "not a gzip file"),
        ("cut.csv.gz", gzip.compress(AZURE.encode() * 50)[:100], "not a gzip file"),
        ("header_only.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
        ("empty.jsonl", b"\n", "no requests"),
    ],
    ids=["binary", "latin-1", "fake-gz", "truncated-gz", "header-only", "blank-jsonl"],
)
def test_unreadable_or_empty_trace_is_a_user_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFormatError) as info:
        load_workload(str(path))
    assert str(path) in str(info.value) and message in str(info.value)


def test_csv_with_a_utf8_byte_order_mark_reads_like_without(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + AZURE.encode())
    assert load_workload(str(path)).requests == read_azure(write(tmp_path, "a.csv", AZURE)).requests
