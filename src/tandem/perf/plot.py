"""One-page picture of a cost model: prefill time against prompt length, decode step time
against batch size at several context lengths, and the KV capacity."""

from __future__ import annotations

import warnings
from pathlib import Path

from tandem.perf.base import CostModel
from tandem.perf.ranges import OutOfMeasuredRangeWarning

PROMPT_LENS = (64, 128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256)
CONTEXT_LENS = (512, 2048, 8192)


def plot_cost_model(model: CostModel, path: str | Path) -> None:
    """Write the picture as a PNG (matplotlib, Agg backend: no display needed)."""
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
    ax_p.plot(PROMPT_LENS, prefill_ms, marker="o")
    ax_p.set_xlabel("prompt length (tokens, batch of one)")
    ax_p.set_ylabel("prefill time (ms)")
    ax_p.set_title("prefill")
    ax_p.grid(alpha=0.3)
    for ctx, series in decode_ms.items():
        ax_d.plot(BATCH_SIZES, series, marker=".", label=f"{ctx} context tokens / request")
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
