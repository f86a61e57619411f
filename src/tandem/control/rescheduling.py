"""Decode reschedulers. ``none`` never migrates; the rescheduling issue adds predictive ones."""

from __future__ import annotations

from collections.abc import Sequence

from tandem.control.policies import _RESCHEDULER, DecodeRescheduler, Migration, register
from tandem.control.views import DecodeInstanceView


@register(_RESCHEDULER, "none")
class NoRescheduler(DecodeRescheduler):
    """Never migrates; the data plane does not even tick it."""

    interval_s = None

    def plan(self, now_s: float, instances: Sequence[DecodeInstanceView]) -> Sequence[Migration]:
        return ()
