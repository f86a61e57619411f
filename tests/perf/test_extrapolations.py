"""A cost model says where a plan's or a run's usage leaves its measured range."""

from __future__ import annotations

from dataclasses import replace

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


def _one_prompt_table() -> MeasuredCostModel:
    """A measured-tables profile: one prompt length (6,144), decode batches 10-60."""
    return MeasuredCostModel(
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


def test_measured_tables_flag_prompts_and_batches_outside_their_points() -> None:
    model = _one_prompt_table()
    assert model.extrapolations(Usage(6144, 6144, None, 10, 60, 1e6)) == []
    assert model.extrapolations(Usage(100, 6144, None, 8, 60, None)) == [
        "prompt lengths 100-6,144 tokens, measured at 6,144 only",
        "decode batch sizes 8-60, measured 10-60",
    ]


def test_cost_model_plot_shades_what_the_profile_did_not_measure() -> None:
    """tandem profile --plot: prompt lengths past the measured max and decode batches outside
    the measured batches are shaded and labelled "extrapolated"; a context curve past the
    measured context is dashed and says so; a model without a range gets no shading."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    from tandem.perf.plot import BATCH_SIZES, PROMPT_LENS, cost_model_figure, shade_extrapolated
    from tandem.perf.registry import get_profile

    def shaded(ax) -> list[tuple[float, float, str]]:  # noqa: ANN001
        out = []
        for p in ax.patches:
            if isinstance(p, Rectangle):
                x0, x1 = p.get_x(), p.get_x() + p.get_width()
            else:
                assert isinstance(p, Polygon)
                xs = p.get_xy()[:, 0]
                x0, x1 = float(xs.min()), float(xs.max())
            out.append((x0, x1, p.get_label()))
        return out

    fitted = get_profile("llama3-8b_a100_tp1")
    r = MeasuredRange(max_prompt_tokens=2048, min_decode_batch_size=4, max_decode_batch_size=64)
    model = replace(fitted, measured_range=replace(r, max_context_tokens_per_request=2048))
    fig = cost_model_figure(model)
    ax_p, ax_d = fig.axes[:2]
    assert shaded(ax_p) == [(2048, PROMPT_LENS[-1], "extrapolated")]
    assert shaded(ax_d) == [
        (BATCH_SIZES[0], 4, "extrapolated"),
        (64, BATCH_SIZES[-1], "_nolegend_"),
    ]
    assert "extrapolated" in ax_p.get_legend_handles_labels()[1]
    lines = {line.get_label(): line.get_linestyle() for line in ax_d.get_lines()}
    assert lines["512 context tokens / request"] == "-"
    assert lines["8192 context tokens / request (extrapolated)"] == "--"
    plt.close(fig)
    unlimited = replace(fitted, measured_range=MeasuredRange())
    fig = cost_model_figure(unlimited)
    assert all(shaded(ax) == [] for ax in fig.axes)
    plt.close(fig)
    table = _one_prompt_table()
    fig = cost_model_figure(table)
    assert [x[:2] for x in shaded(fig.axes[0])] == [(64, 6144), (6144, 8192)]
    assert [x[:2] for x in shaded(fig.axes[1])] == [(1, 10), (60, 256)]
    plt.close(fig)
    fig, ax = plt.subplots()
    assert shade_extrapolated(ax, (None, 10_000), 1, 8192) == 0  # all measured
    plt.close(fig)
