"""``tandem demo``: the main job on embedded defaults."""

from __future__ import annotations

from tandem.commands.trace import print_stats_table
from tandem.workload import EMBEDDED, load_workload
from tandem.workload.stats import workload_stats


def demo() -> None:
    """Run the main job on embedded defaults (for now: the embedded workloads' statistics)."""
    results = []
    for name in EMBEDDED:
        results.append(workload_stats(load_workload(name)))
    print_stats_table(results)
