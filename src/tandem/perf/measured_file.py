"""The hand-written file format of measured tables (YAML or JSON) and its loader.

Example (``examples/measured_deepseek_v3_h200.yaml``)::

    name: deepseek-v3.1_8xh200
    model: DeepSeek-V3.1
    hardware: 8x H200, SGLang 0.5.8
    num_gpus: 8
    prefill:
      overhead_s: 0.1                 # latency outside the instance's busy time
      points:                         # maximum prefill throughput at an input length
        - {input_len_tokens: 6144, max_throughput_tokens_per_s: 28300}
    decode:
      points:                         # time per output token against decode batch size
        - {batch_size: 10, tpot_ms: 12.8}
        - {batch_size: 20, tpot_ms: 16.4}
      cuda_graph_batch_sizes: sglang  # optional: sglang, vllm or a list; decode batches are
                                      # padded to these sizes (default: no padding)
    kv:
      bytes_per_token: 70272
      capacity_tokens: 600000
      link_bandwidth_bytes_per_s: 4.0e+11   # optional (default 25e9)
      link_latency_s: 1.0e-5                # optional (default 1e-4)

Every error names the file and the field (``decode.points[1].tpot_ms``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from tandem.perf._loading import StrictModel, read_mapping, validate
from tandem.perf.measured import GRAPH_BATCH_SIZES, DecodePoint, MeasuredCostModel, PrefillPoint


class _PrefillPointIn(StrictModel):
    input_len_tokens: PositiveInt
    max_throughput_tokens_per_s: PositiveFloat


class _PrefillIn(StrictModel):
    overhead_s: NonNegativeFloat = 0.0
    points: list[_PrefillPointIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> _PrefillIn:
        for i in range(1, len(self.points)):
            prev, cur = self.points[i - 1], self.points[i]
            if cur.input_len_tokens <= prev.input_len_tokens:
                raise ValueError(f"points[{i}].input_len_tokens: must exceed the previous point's")
            if cur.input_len_tokens / cur.max_throughput_tokens_per_s < (
                prev.input_len_tokens / prev.max_throughput_tokens_per_s
            ):
                raise ValueError(
                    f"points[{i}].max_throughput_tokens_per_s: a longer prompt would finish "
                    f"sooner than points[{i - 1}] (input_len / max_throughput must not decrease)"
                )
        return self


class _DecodePointIn(StrictModel):
    batch_size: PositiveInt
    tpot_ms: PositiveFloat


class _DecodeIn(StrictModel):
    points: list[_DecodePointIn] = Field(min_length=1)
    cuda_graph_batch_sizes: Literal["sglang", "vllm"] | list[PositiveInt] | None = None

    @model_validator(mode="after")
    def _monotone(self) -> _DecodeIn:
        for i in range(1, len(self.points)):
            prev, cur = self.points[i - 1], self.points[i]
            if cur.batch_size <= prev.batch_size:
                raise ValueError(f"points[{i}].batch_size: must exceed the previous point's")
            if cur.tpot_ms < prev.tpot_ms:
                raise ValueError(
                    f"points[{i}].tpot_ms: below points[{i - 1}].tpot_ms, but a bigger batch "
                    "cannot step faster"
                )
        gs = self.cuda_graph_batch_sizes
        if isinstance(gs, list) and (not gs or gs != sorted(set(gs))):
            raise ValueError("cuda_graph_batch_sizes: must be a non-empty increasing list")
        return self


class _KvIn(StrictModel):
    bytes_per_token: PositiveInt
    capacity_tokens: PositiveInt
    link_bandwidth_bytes_per_s: PositiveFloat = 25e9
    link_latency_s: NonNegativeFloat = 1e-4


class MeasuredFile(StrictModel):
    """Schema of a measured-profile file."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    hardware: str = Field(min_length=1)
    num_gpus: PositiveInt
    source: str = ""
    prefill: _PrefillIn
    decode: _DecodeIn
    kv: _KvIn


def measured_from_mapping(data: dict, label: str | Path) -> MeasuredCostModel:
    """Validate a parsed measured-profile mapping and build its cost model."""
    doc = validate(MeasuredFile, data, label)
    return MeasuredCostModel(
        name=doc.name,
        model=doc.model,
        hardware=doc.hardware,
        num_gpus=doc.num_gpus,
        prefill_points=tuple(
            PrefillPoint(p.input_len_tokens, p.max_throughput_tokens_per_s)
            for p in doc.prefill.points
        ),
        overhead_s=doc.prefill.overhead_s,
        tpot_points=tuple(DecodePoint(p.batch_size, p.tpot_ms / 1e3) for p in doc.decode.points),
        kv_bytes_per_token=doc.kv.bytes_per_token,
        kv_capacity_tokens=doc.kv.capacity_tokens,
        link_bandwidth_bytes_per_s=doc.kv.link_bandwidth_bytes_per_s,
        link_latency_s=doc.kv.link_latency_s,
        source=doc.source,
        graph_batch_sizes=_graph_sizes(doc.decode.cuda_graph_batch_sizes),
    )


def _graph_sizes(value: str | list[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return GRAPH_BATCH_SIZES[value]
    return tuple(value)


def load_measured(path: str | Path) -> MeasuredCostModel:
    """Load a user's measured-profile file (YAML or JSON)."""
    return measured_from_mapping(read_mapping(path), path)
