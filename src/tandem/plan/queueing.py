"""Queueing formulas for prefill: waiting time of M/G/c queues (M/M/1, M/D/1 and M/G/1 are
special cases), means and percentiles.

- Mean wait, Allen-Cunneen: ``Wq = C(c, a) / (c*mu - lambda) * (ca2 + cs2) / 2`` with
  ``C`` the Erlang-C probability of waiting, ``a = lambda / mu``, ``cs2`` the squared
  coefficient of variation of service times and ``ca2`` that of inter-arrival gaps. For
  ``c = 1`` and ``ca2 = 1`` it is exactly Pollaczek-Khinchine (M/G/1); with ``cs2 = 1`` it is
  exactly M/M/c.
- Percentiles, exponential-tail approximation: a request waits with probability ``C``; given
  that it waits, the wait is exponential with mean ``Wq / C``. So the p-quantile of the wait
  is ``(Wq / C) * ln(C / (1 - p))`` when ``C > 1 - p``, else 0. Exact for M/M/c.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# What the ``--queue`` names assume about the service-time variability (``None``: measure it).
QUEUE_CS2: dict[str, float | None] = {"mm1": 1.0, "md1": 0.0, "mg1": None}


def erlang_c(num_servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c (``offered_load = lambda/mu < c``)."""
    c, a = num_servers, offered_load
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    # Erlang B by the stable recursion, then C = B / (1 - rho (1 - B)).
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho * (1.0 - b))


def mean_wait_s(
    rate_rps: float, num_servers: int, mean_service_s: float, cs2: float, ca2: float = 1.0
) -> float:
    """Mean time in queue (before service) of M/G/c by Allen-Cunneen; ``inf`` if overloaded."""
    if rate_rps <= 0:
        return 0.0
    capacity_rps = num_servers / mean_service_s
    if rate_rps >= capacity_rps:
        return math.inf
    p_wait = erlang_c(num_servers, rate_rps * mean_service_s)
    return p_wait / (capacity_rps - rate_rps) * (ca2 + cs2) / 2.0


def wait_quantile_s(
    rate_rps: float,
    num_servers: int,
    mean_service_s: float,
    cs2: float,
    quantile: float,
    ca2: float = 1.0,
) -> float:
    """The ``quantile`` (0-1) of the time in queue, exponential-tail approximation."""
    wq = mean_wait_s(rate_rps, num_servers, mean_service_s, cs2, ca2)
    if wq == 0.0 or math.isinf(wq):
        return wq
    p_wait = erlang_c(num_servers, rate_rps * mean_service_s)
    if p_wait <= 1.0 - quantile:
        return 0.0
    return (wq / p_wait) * math.log(p_wait / (1.0 - quantile))


def max_rate_rps(meets: Callable[[float], bool], upper_rps: float, rel_tol: float = 1e-6) -> float:
    """Largest rate in ``[0, upper_rps)`` with ``meets(rate)`` (monotone: true, then false)."""
    lo, hi = 0.0, upper_rps
    if not meets(lo):
        return 0.0
    while hi - lo > rel_tol * upper_rps:
        mid = (lo + hi) / 2.0
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return lo


def batch_residual_s(
    rate_rps: float, mean_service_s: float, service_m2: float, max_batch_s: float
) -> float:
    """Mean residual of the batch in progress that an arrival finds at a busy instance which,
    whenever it frees, prefills *everything queued* as one batch (gated batch service, batch
    time = sum of the prompts' times, at most ``max_batch_s``).

    Batch-indexed moments ``m1, m2`` of the batch time ``B`` satisfy, with ``rho = rate *
    mean_service_s`` and ``p0 = P(no arrival during B) ~ exp(-rate * m1)`` (then the next
    batch is one prompt): ``m1 = rho*m1 + p0*E[S]`` and ``m2 = rho^2*m2 + rate*E[S^2]*m1 +
    p0*E[S^2]`` (the work arriving during ``B`` is compound Poisson). An arrival lands in a
    batch with probability proportional to its length, so the residual is ``m2 / (2 m1)``.
    """
    rho = rate_rps * mean_service_s
    if rate_rps <= 0 or rho >= 1.0:
        return max_batch_s / 2.0 if rho >= 1.0 else 0.0
    m1 = mean_service_s
    for _ in range(100):
        p0 = math.exp(-rate_rps * m1)
        new = min(p0 * mean_service_s / (1.0 - rho), max_batch_s)
        if abs(new - m1) <= 1e-12 * max(m1, 1e-12):
            m1 = new
            break
        m1 = 0.5 * (m1 + new)
    p0 = math.exp(-rate_rps * m1)
    m2 = (rate_rps * service_m2 * m1 + p0 * service_m2) / (1.0 - rho**2)
    return min(m2 / (2.0 * m1), max_batch_s)
