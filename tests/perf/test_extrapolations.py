"""A cost model says where a plan's or a run's usage leaves its measured range."""

from __future__ import annotations

from tandem.perf.measured import DecodePoint, MeasuredCostModel, PrefillPoint
from tandem.perf.ranges import MeasuredRange, Usage, range_excesses


def test_every_excess_of_a_fitted_range_is_named_and_nothing_inside_is() -> None:
    r = MeasuredRange(
        max_prompt_tokens=8192,
        max_prefill_batch_tokens=16384,
        max_decode_batch_size=64,
        min_decode_batch_size=2,
        max_context_tokens_per_request=8192,
    )
    inside = Usage(1, 8192, 16384, 2, 64, 8192.0)
    assert range_excesses(r, inside) == []
    out = range_excesses(r, Usage(1, 9000, 20000, 1, 65, 9000.0))
    assert len(out) == 5
    assert out[0] == "prompt of 9,000 tokens above the measured max 8,192"
    assert "decode batch of 1 below the measured min 2" in out


def test_measured_tables_flag_prompts_and_batches_outside_their_points() -> None:
    model = MeasuredCostModel(
        name="m",
        model="x",
        hardware="y",
        num_gpus=1,
        prefill_points=(PrefillPoint(6144, 28300.0),),
        overhead_s=0.1,
        tpot_points=(DecodePoint(10, 0.0128), DecodePoint(60, 0.0262)),
        kv_bytes_per_token=1,
        kv_capacity_tokens=10**6,
    )
    assert model.extrapolations(Usage(6144, 6144, None, 10, 60, 1e6)) == []
    assert model.extrapolations(Usage(100, 6144, None, 8, 60, None)) == [
        "prompt lengths 100-6,144 tokens, measured at 6,144 only",
        "decode batch sizes 8-60, measured 10-60",
    ]
