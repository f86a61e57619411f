"""The pure control plane: read-only views of instances and the policies that decide.

Policies never read a clock, sleep or do I/O: the data plane (simulator or real serving) hands
them views and the time, and carries out what they return.

- ``views``: what a policy may see of prefill and decode instances and running requests.
- ``policies``: the three interfaces (prefill dispatch, decode placement, decode rescheduler)
  and the name registry.
- ``dispatch``, ``placement``, ``rescheduling``: the built-in policies, registered by name.
"""

from tandem.control.policies import (
    DecodePlacementPolicy,
    DecodeRescheduler,
    Migration,
    PrefillDispatchPolicy,
    make_dispatch,
    make_placement,
    make_rescheduler,
    policy_names,
)

__all__ = [
    "DecodePlacementPolicy",
    "DecodeRescheduler",
    "Migration",
    "PrefillDispatchPolicy",
    "make_dispatch",
    "make_placement",
    "make_rescheduler",
    "policy_names",
]
