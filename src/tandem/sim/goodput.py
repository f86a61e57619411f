"""DistServe's goodput: the highest load at which at least 90% of requests meet every SLO.

The search scales the workload's arrival rate: it brackets the answer by multiplying or dividing
the scale by ``growth`` (2 by default; less when the start is a good guess, since runs far past
the answer are overloaded and slow to simulate), then bisects to a relative tolerance.
Attainment is not strictly monotone in load on a finite trace, so the result is the highest
scale *found* to pass with a failing scale just above it. When every probe up to the search's
cap passes, there is no failing scale: the result is then ``capped``, a lower bound and not a
measurement, and reports must say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tandem.errors import ConfigError


@dataclass(frozen=True)
class GoodputResult:
    rate_scale: float
    attainment: float
    num_runs: int
    #: True when the search hit its cap still passing: ``rate_scale`` is only a lower bound.
    capped: bool = False


def find_max_rate_scale(
    attainment_at: Callable[[float], float],
    *,
    target: float = 0.9,
    start: float = 1.0,
    rel_tol: float = 0.02,
    max_doublings: int = 12,
    growth: float = 2.0,
) -> GoodputResult:
    """Highest rate scale whose SLO attainment is at least ``target``."""
    if not 0 < target <= 1:
        raise ConfigError(f"attainment target must be in (0, 1], got {target}")
    if growth <= 1:
        raise ConfigError(f"search growth factor must be > 1, got {growth}")
    runs = 0

    def ok(scale: float) -> tuple[bool, float]:
        nonlocal runs
        runs += 1
        value = attainment_at(scale)
        return value >= target, value

    passed, value = ok(start)
    lo, hi = (start, None) if passed else (None, start)
    lo_value = value if passed else 0.0
    for _ in range(max_doublings):
        if lo is not None and hi is not None:
            break
        probe = (lo * growth) if hi is None else (hi / growth)  # type: ignore[operator]
        passed, value = ok(probe)
        if passed:
            lo, lo_value = probe, value
        else:
            hi = probe
    if lo is None:
        return GoodputResult(0.0, lo_value, runs)
    if hi is None:
        return GoodputResult(lo, lo_value, runs, capped=True)
    while (hi - lo) / lo > rel_tol:
        mid = (lo + hi) / 2.0
        passed, value = ok(mid)
        if passed:
            lo, lo_value = mid, value
        else:
            hi = mid
    return GoodputResult(lo, lo_value, runs)
