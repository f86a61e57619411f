"""One-page picture of a cost model: prefill time against prompt length, decode step time
against batch size at several context lengths, and the KV capacity. Where an axis leaves what
the profile measured (``CostModel.measured_spans``), that part is shaded light grey and
labelled "extrapolated"; a context curve beyond the measured context is dashed and says so."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tandem.perf.base import CostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning, outside

PROMPT_LENS = (64, 128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256)
CONTEXT_LENS = (512, 2048, 8192)


EXTRAPOLATED = "extrapolated"


def shade_extrapolated(
    ax: Any, span: tuple[float | None, float | None], x_lo: float, x_hi: float
) -> int:
    """Shade the parts of ``[x_lo, x_hi]`` (the plotted x range) outside the measured
    ``span``, light grey, the first labelled "extrapolated" for the legend; the x limits are
    kept at the plotted range. Returns how many parts were shaded (0, 1 or 2)."""
    lo, hi = span
    parts = []
    if lo is not None and lo > x_lo:
        parts.append((x_lo, min(lo, x_hi)))
    if hi is not None and hi < x_hi:
        parts.append((max(hi, x_lo), x_hi))
    for i, (a, b) in enumerate(parts):
        ax.axvspan(
            a,
            b,
            color="0.85",
            alpha=0.6,
            lw=0,
            zorder=0,
            label=EXTRAPOLATED if i == 0 else "_nolegend_",
        )
    if parts:
        ax.set_xlim(x_lo, x_hi)
    return len(parts)


def plot_cost_model(model: CostModel, path: str | Path) -> None:
    """Write the picture as a PNG (matplotlib, Agg backend: no display needed)."""
    fig = cost_model_figure(model)
    import matplotlib.pyplot as plt  # after the figure chose the Agg backend

    fig.savefig(path, dpi=110)
    plt.close(fig)


def cost_model_figure(model: CostModel) -> Any:
    """The picture as a matplotlib figure: axes 0 prefill, axes 1 decode (the caller closes
    it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    with warnings.catch_warnings():
        # The picture spans beyond most measured ranges on purpose; `show` reports the range.
        warnings.simplefilter("ignore", OutOfMeasuredRangeWarning)
        prefill_ms = [model.prefill_time_s([n]) * 1e3 for n in PROMPT_LENS]
        decode_ms = {
            ctx: [model.decode_step_time_s(b, b * ctx) * 1e3 for b in BATCH_SIZES]
            for ctx in CONTEXT_LENS
        }
    spans = model.measured_spans()
    ax_p.plot(PROMPT_LENS, prefill_ms, marker="o")
    if shade_extrapolated(ax_p, spans.prompt_tokens, PROMPT_LENS[0], PROMPT_LENS[-1]):
        ax_p.legend(fontsize=8)
    ax_p.set_xlabel("prompt length (tokens, batch of one)")
    ax_p.set_ylabel("prefill time (ms)")
    ax_p.set_title("prefill")
    ax_p.grid(alpha=0.3)
    for ctx, series in decode_ms.items():
        beyond = outside(spans.context_tokens_per_request, ctx)
        ax_d.plot(
            BATCH_SIZES,
            series,
            marker=".",
            ls="--" if beyond else "-",
            label=f"{ctx} context tokens / request" + (f" ({EXTRAPOLATED})" if beyond else ""),
        )
    shade_extrapolated(ax_d, spans.decode_batch_size, BATCH_SIZES[0], BATCH_SIZES[-1])
    ax_d.set_xlabel("decode batch size")
    ax_d.set_ylabel("decode step time (ms)")
    ax_d.set_title("decode step")
    ax_d.grid(alpha=0.3)
    ax_d.legend(fontsize=8)
    fig.suptitle(
        f"{model.name}: KV capacity {model.kv_capacity_tokens:,} tokens "
        f"({model.kv_bytes_per_token / 1024:.0f} KiB/token)"
    )
    fig.tight_layout()
    return fig
