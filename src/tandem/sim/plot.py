"""Timeline plot: per-decode-instance batch size and KV use over time."""

from __future__ import annotations

from pathlib import Path

from tandem.errors import ConfigError
from tandem.sim.result import SimResult


def policy_words(result: SimResult) -> str:
    """The decode policy that ran, from its four components: the preset's name when they are
    one (``policy ares``), else every component (``round-robin placement, rescheduler ares,
    ...``). The title used to name the placement alone: round-robin when the ares rescheduler
    ran."""
    from tandem.sim.presets import POLICY_PRESETS, with_policy

    config = result.config
    for name in POLICY_PRESETS:
        if config == with_policy(config, name):
            return f"policy {name}"
    return (
        f"{config.placement} placement, rescheduler {config.rescheduler}, "
        f"prediction {config.prediction}, {config.admission} admission"
    )


def plot_timeline(
    result: SimResult, out: Path, max_instances: int = 16, policy: str | None = None
) -> None:
    """Two panels (batch size, KV use as a share of capacity), one line per decode instance.
    ``policy``: the decode policy's name for the title (default: ``policy_words``)."""
    if result.decode_timelines is None:
        raise ConfigError("the run did not record timelines (record_timeline=False)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    capacity = result.config.decode_cost.kv_capacity_tokens
    fig, (ax_batch, ax_kv) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    for i, timeline in enumerate(result.decode_timelines[:max_instances]):
        if not timeline:
            continue
        times = [t for t, _, _ in timeline]
        ax_batch.step(times, [b for _, b, _ in timeline], where="post", lw=0.7, label=f"D{i}")
        ax_kv.step(times, [kv / capacity for _, _, kv in timeline], where="post", lw=0.7)
    ax_batch.set_ylabel("running batch size")
    ax_kv.set_ylabel("KV use (share of capacity)")
    ax_kv.set_xlabel("time (s)")
    ax_kv.set_ylim(0, 1.05)
    shown = min(max_instances, len(result.decode_timelines))
    ax_batch.set_title(
        f"{result.workload}: {policy or policy_words(result)}, "
        f"{shown} of {len(result.decode_timelines)} decode instances"
    )
    if shown <= 16:
        ax_batch.legend(ncol=8, fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
