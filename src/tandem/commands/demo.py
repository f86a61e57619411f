"""``tandem demo``: the main job on embedded defaults.

1. The embedded workloads' statistics.
2. The ServeGen DeepSeek-R1 reasoning workload (long outputs) simulated on a 4P12D cluster of
   Llama-3-8B on A100 instances, once per decode placement policy, side by side.
"""

from __future__ import annotations

from tandem.commands._output import print_table
from tandem.commands.trace import print_stats_table
from tandem.control import policy_names
from tandem.metrics.serving import parse_slo
from tandem.perf.registry import get_profile
from tandem.sim import ClusterConfig, simulate
from tandem.workload import EMBEDDED, load_workload
from tandem.workload.stats import workload_stats

DEMO_WORKLOAD = "servegen-r1"
DEMO_PROFILE = "llama3-8b_a100_tp1"
DEMO_SLO = "ttft=2s,tpot=50ms"


def demo() -> None:
    """Run the main job on embedded defaults: workload stats, then a placement comparison."""
    workloads = {name: load_workload(name) for name in EMBEDDED}
    print_stats_table([workload_stats(w) for w in workloads.values()])

    cost = get_profile(DEMO_PROFILE)
    slo = parse_slo(DEMO_SLO)
    rows = []
    for placement in policy_names()["placement"]:
        config = ClusterConfig(4, 12, cost, cost, placement=placement)
        m = simulate(workloads[DEMO_WORKLOAD], config).metrics(slo)
        rows.append(
            (
                placement,
                m["num_completed"],
                m["num_preempted"],
                m["slo_attainment"],
                m["request_goodput"],
                m["mean_ttft_ms"],
                m["p99_ttft_ms"],
                m["mean_tpot_ms"],
                m["p99_tpot_ms"],
            )
        )
    print_table(
        f"{DEMO_WORKLOAD} on 4P12D {DEMO_PROFILE}, SLO {DEMO_SLO}: decode placement policies",
        ["placement", "completed", "preempted", "SLO attained", "goodput req/s"]
        + ["mean TTFT ms", "p99 TTFT ms", "mean TPOT ms", "p99 TPOT ms"],
        rows,
    )
