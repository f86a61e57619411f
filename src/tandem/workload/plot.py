"""Plot of a workload: input and output length histograms and arrival rate over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.workload.request import Workload


def plot_workload(w: Workload, out: Path) -> None:
    """Write a three-panel PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, values, label in (
        (axes[0], w.prompt_tokens, "input tokens"),
        (axes[1], w.output_tokens, "output tokens"),
    ):
        upper = max(2.0, float(values.max()) if values.size else 2.0)
        bins = np.logspace(0, np.log10(upper), 50)
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("requests")
        ax.set_title(f"{label}: mean {values.mean():.0f}, p99 {np.percentile(values, 99):.0f}")
    arrivals = w.arrivals_s
    duration = max(w.duration_s, 1.0)
    bin_s = max(1.0, duration / 120)
    counts, edges = np.histogram(arrivals, bins=np.arange(0.0, duration + bin_s, bin_s))
    axes[2].plot(edges[:-1], counts / bin_s, drawstyle="steps-post")
    axes[2].set_xlabel("time (s)")
    axes[2].set_ylabel(f"requests/s ({bin_s:.0f}-s bins)")
    axes[2].set_title(f"arrival rate: {len(w)} requests")
    fig.suptitle(w.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
