"""Decode CUDA-graph padding in measured tables: a batch is priced at the captured size it
runs as; the table's own points are reproduced; off unless asked for."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

from tandem.errors import InputFormatError
from tandem.perf.measured import GRAPH_BATCH_SIZES, padded_batch
from tandem.perf.registry import load_measured

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "measured_deepseek_v3_h200.yaml"
TPOT = [(10, 12.8), (20, 16.4), (30, 18.8), (40, 21.6), (50, 23.9), (60, 26.2)]


def _models():  # noqa: ANN202
    plain = load_measured(EXAMPLE)
    return plain, dataclasses.replace(plain, graph_batch_sizes=GRAPH_BATCH_SIZES["sglang"])


def test_engines_pad_to_multiples_of_eight() -> None:
    """SGLang and vLLM defaults agree from 5 to 160: the next multiple of 8 (16 below 16)."""
    for b in range(5, 161):
        expected = 8 if b <= 8 else -(-b // 8) * 8
        assert padded_batch(b, GRAPH_BATCH_SIZES["sglang"]) == expected
        assert padded_batch(b, GRAPH_BATCH_SIZES["vllm"]) == expected
    assert padded_batch(600, GRAPH_BATCH_SIZES["vllm"]) == 600  # eager above the largest


def test_table_points_reproduced_and_a_batch_past_a_size_pays_the_next() -> None:
    plain, padded = _models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b, ms in TPOT:
            assert padded.decode_step_coeffs(b)[0] == pytest.approx(ms / 1e3)
        # 25..32 run the graph of 32, which the point at 30 measured; 33..40 that of 40.
        for b in range(25, 33):
            assert padded.decode_step_coeffs(b)[0] == pytest.approx(0.0188)
        for b in range(33, 41):
            assert padded.decode_step_coeffs(b)[0] == pytest.approx(0.0216)
        steps = [padded.decode_step_coeffs(b)[0] for b in range(1, 80)]
        assert steps == sorted(steps)
        assert plain.graph_batch_sizes == ()
        assert plain.decode_step_coeffs(33)[0] == pytest.approx(0.0188 + 3 * 0.00028)


def test_file_field_names_an_engine_or_lists_sizes(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    anchor = "    - {batch_size: 60, tpot_ms: 26.2}\n"
    for value, expected in (
        ("sglang", GRAPH_BATCH_SIZES["sglang"]),
        ("vllm", GRAPH_BATCH_SIZES["vllm"]),
        ("[8, 16, 32]", (8, 16, 32)),
    ):
        path = tmp_path / "m.yaml"
        path.write_text(text.replace(anchor, anchor + f"  cuda_graph_batch_sizes: {value}\n"))
        assert load_measured(path).graph_batch_sizes == expected
    path.write_text(text.replace(anchor, anchor + "  cuda_graph_batch_sizes: [16, 8]\n"))
    with pytest.raises(InputFormatError, match="cuda_graph_batch_sizes"):
        load_measured(path)
