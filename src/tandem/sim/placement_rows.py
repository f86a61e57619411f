"""``ares`` placement without reading every decode instance at every placement.

``AresPlacement.choose`` reads KV used, KV pending, the request count and the projected KV of
every instance for every newcomer: at 256 instances that was most of an ``ares`` run. These
values change only when something happens on an instance (a step boundary, a placement, a
transfer or migration, a projection rebuild: the instance notes it in ``changed``) or when one of
its steps ends (``kv_used_tokens`` grows). ``PlacementRows`` keeps them in arrays and re-reads,
at each placement, only the instances that changed or whose step has ended since they were
read; ``AresPlacement.choose_arrays`` then picks on the arrays. The reads it skips would have
returned the values it holds and changed nothing (a projection is rebuilt at the first read
after its refresh step, and such a read happens here as there): the same choices, checked by a
test against ``choose`` (``decode.VECTORISED = False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tandem.control.ares import AresPlacement
from tandem.control.views import NewRequestView
from tandem.sim.decode import DecodeInstance
from tandem.sim.events import Clock


class PlacementRows:
    """The placement inputs of every decode instance, as arrays kept up to date lazily."""

    def __init__(
        self, instances: Sequence[DecodeInstance], clock: Clock, placement: AresPlacement
    ) -> None:
        n = len(instances)
        self._instances = instances
        self._clock = clock
        self._placement = placement
        self._used = np.zeros(n, np.int64)
        self._pending = np.zeros(n, np.int64)
        self._busy = np.zeros(n, np.int64)
        self._projected = np.zeros(n, np.float64)
        self._capacity = np.array([d.kv_capacity_tokens for d in instances], np.int64)
        self._max_batch = np.array([d.max_batch_size for d in instances], np.int64)
        self._valid_until = np.full(n, -math.inf)  # nothing read yet
        self._changed: set[int] = set()
        for i, d in enumerate(instances):
            if d.instance_id != i:
                raise ValueError("decode instance ids must be their positions")
            d.changed = self._changed

    def choose(self, request: NewRequestView) -> int:
        self._refresh()
        return self._placement.choose_arrays(
            request,
            self._used,
            self._pending,
            self._busy,
            self._projected,
            self._capacity,
            self._max_batch,
        )

    def _refresh(self) -> None:
        stale = self._changed
        stale.update(np.flatnonzero(self._valid_until <= self._clock.now_s).tolist())
        horizon = self._placement.horizon_tokens
        for i in sorted(stale):
            used, pending, busy, projected, until = self._instances[i].placement_row(horizon)
            self._used[i] = used
            self._pending[i] = pending
            self._busy[i] = busy
            self._projected[i] = math.nan if projected is None else projected
            self._valid_until[i] = until
        stale.clear()
