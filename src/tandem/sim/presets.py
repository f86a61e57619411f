"""Decode policy presets: what a policy *name* such as ``ares`` means as a whole system.

A decode policy in the experiments is four parts of ``ClusterConfig``: placement,
rescheduler, prediction source and admission. ``round-robin``, ``least-kv`` and ``llumnix``
admit greedily (as vLLM does) and use no predictions; ``ares`` is the whole of our ARES design
(``docs/rescheduling.md``): ares placement, the ares rescheduler, predictions from the measured
error model and predictive admission; ``ares-oracle`` is the same with true lengths.

This table is the one meaning of those names: ``tandem simulate --policy``, ``tandem
experiment rescheduling`` and ``tandem demo`` all build their configuration from it. The
component options (``--placement ares``, ``--rescheduler ares``) name single components.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tandem.errors import UnknownNameError
from tandem.sim.cluster import ClusterConfig


@dataclass(frozen=True)
class PolicyPreset:
    """The four ``ClusterConfig`` fields a decode policy name stands for."""

    placement: str
    rescheduler: str
    prediction: str
    admission: str


POLICY_PRESETS: dict[str, PolicyPreset] = {
    "round-robin": PolicyPreset("round-robin", "none", "none", "greedy"),
    "least-kv": PolicyPreset("least-kv", "none", "none", "greedy"),
    "llumnix": PolicyPreset("least-kv", "llumnix", "none", "greedy"),
    "ares": PolicyPreset("ares", "ares", "error-model", "predictive"),
    "ares-oracle": PolicyPreset("ares", "ares", "oracle", "predictive"),
}


def policy_preset(name: str) -> PolicyPreset:
    """The preset called ``name``; unknown names list the known ones."""
    try:
        return POLICY_PRESETS[name]
    except KeyError:
        raise UnknownNameError("policy", name, POLICY_PRESETS) from None


def with_policy(config: ClusterConfig, name: str) -> ClusterConfig:
    """``config`` with its placement, rescheduler, prediction and admission set to the preset
    called ``name``; every other field is kept."""
    p = policy_preset(name)
    return replace(
        config,
        placement=p.placement,
        rescheduler=p.rescheduler,
        prediction=p.prediction,
        admission=p.admission,
    )
