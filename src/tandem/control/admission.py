"""Decode admission and preemption rules: which waiting request may join the running batch, and
which running requests are dropped when the KV cache overflows.

One home for the rules that every decode data plane applies (the simulated decode instance in
``sim.decode`` and the real decode worker in ``serve``); each keeps its own bookkeeping (queues,
reservations, KV transfers, recomputation) and asks these functions for the decision. Plain
numbers and sequences in, a decision out: no clock, no I/O, no request objects.

The model: a decode step adds one token of KV to every running request, so a batch of ``B``
requests holding ``used`` tokens needs ``used + B`` tokens after its next step. Memory promised
to requests on their way here (KV transfers from prefill, migrations) is ``reserved`` and is not
available to anyone else.

- ``can_admit``: greedy FCFS admission of the head of the waiting queue (also the test for
  promising memory to an incoming migration).
- ``fits_predicted``: the extra test of predictive admission (ARES predictions in the data
  plane): the projected KV peak of the batch with the newcomer must fit.
- ``admission_hold_until``: how long that test may hold a request back; past it, greedy
  admission alone decides.
- ``next_step_overflows`` and ``num_to_preempt``: preemption of the newest running requests
  when the next step would not fit.
- ``admission_priority``: the order of the waiting queue. ``fcfs`` (vLLM's) serves it in
  arrival order; ``shortest-predicted`` by arrival time plus predicted remaining tokens over an
  aging rate, so that under memory pressure short answers are not stuck behind long ones and a
  long one is overtaken only by requests arriving within ``remaining / aging`` seconds after
  it: nothing starves.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.control.ares import projected_peak_kv

#: Predictive admission projects every request to its predicted end (no horizon).
NO_HORIZON_TOKENS = 1 << 40

#: Predictions may hold a request back this long after it started waiting on an instance
#: (``admission_hold_until``).
DEFAULT_ADMISSION_MAX_WAIT_S = 1.0

#: Orders of the waiting queue (``admission_priority``).
ADMISSION_ORDERS = ("fcfs", "shortest-predicted")

#: ``shortest-predicted``'s default aging: a request predicted to need ``r`` more tokens lets
#: requests arriving up to ``r / 100`` seconds after it go first (10,000 tokens: 100 s).
DEFAULT_AGING_TOKENS_PER_S = 100.0


def admission_priority(
    arrival_s: float, predicted_remaining_tokens: float, aging_tokens_per_s: float
) -> float:
    """The waiting queue's sort key under ``shortest-predicted`` order (smallest first):
    ``arrival_s + predicted_remaining_tokens / aging_tokens_per_s``.

    Shortest predicted first, aged by arrival: of two requests, the one arriving ``d`` seconds
    later goes first only if it is predicted to need more than ``d * aging_tokens_per_s`` fewer
    tokens. A slow aging rate is nearly shortest-job-first, a fast one nearly FCFS. Requests
    preempted and waiting to resume are not ordered by this: they go first (as in vLLM)."""
    return arrival_s + max(0.0, predicted_remaining_tokens) / aging_tokens_per_s


def admission_hold_until(waiting_since_s: float, max_wait_s: float) -> float:
    """Until when predictive admission (``fits_predicted``) may hold back a request that
    started waiting on this instance at ``waiting_since_s`` (placed there, or preempted there):
    ``waiting_since_s + max_wait_s``. From then on ``can_admit`` alone decides; ``inf`` never
    gives up.

    Why a bound (docs/rescheduling.md, "Bounded wait"): the projected peak runs every request to
    its predicted end, minutes ahead for long answers, and holding a request that fits now
    until that whole future fits left memory idle that arrivals, departures and migrations
    would have changed long before; with long outputs predictive admission then met the SLOs
    for fewer requests than greedy admission. A zero bound is greedy admission."""
    return waiting_since_s + max_wait_s


def can_admit(
    need_tokens: int,
    *,
    kv_capacity_tokens: int,
    kv_used_tokens: int,
    kv_reserved_tokens: int,
    num_running: int,
    num_joining: int,
    max_batch_size: int,
) -> bool:
    """Greedy FCFS rule for the head of the waiting queue (a request needing ``need_tokens`` of
    KV: its prompt plus the tokens generated so far).

    True when a batch slot is free (``num_running + num_joining < max_batch_size``, where
    ``num_joining`` counts requests already admitted but not yet running: KV in transfer, or
    transferred and waiting for the next step boundary) and its KV fits beside one more step of
    the running batch: ``need_tokens + num_running + 1 <= kv_capacity_tokens - kv_used_tokens -
    kv_reserved_tokens``. ``kv_used_tokens`` is the running batch's KV now; ``kv_reserved_tokens``
    is memory promised to requests in transfer and to incoming migrations.

    FCFS is the caller's part: when the head is refused, nobody behind it is asked. There is no
    idle-instance exception: a request that cannot fit an empty instance is the caller's to
    refuse on arrival. The same test decides whether memory may be promised to an incoming
    migration (``need_tokens`` then being the tokens to reserve).
    """
    # One expression, plain ints: the simulator calls this at every step boundary with a queue.
    return (
        num_running + num_joining < max_batch_size
        and need_tokens + num_running + 1
        <= kv_capacity_tokens - kv_used_tokens - kv_reserved_tokens
    )


def next_step_overflows(
    *, kv_capacity_tokens: int, kv_used_tokens: int, kv_reserved_tokens: int, num_running: int
) -> bool:
    """Whether the running batch's next step (one token each) would not fit beside what is
    reserved: ``kv_used_tokens + num_running > kv_capacity_tokens - kv_reserved_tokens``, with
    at least one request running. The cheap test before ``num_to_preempt``."""
    return (
        num_running > 0 and kv_used_tokens + num_running > kv_capacity_tokens - kv_reserved_tokens
    )


def num_to_preempt(
    kv_tokens_newest_first: Sequence[int],
    *,
    kv_capacity_tokens: int,
    kv_used_tokens: int,
    kv_reserved_tokens: int,
) -> int:
    """How many of the newest running requests must be dropped (and later recomputed) so the
    next decode step fits.

    ``kv_tokens_newest_first`` holds the KV of every running request, the newest (last to join)
    first; ``kv_used_tokens`` is their total. While ``used + running > kv_capacity_tokens -
    kv_reserved_tokens``, the newest is dropped (``used`` loses its KV, ``running`` one). At most
    every running request is dropped; 0 when the step fits. Reserved memory is never taken
    back: the requests it was promised to are already on their way.
    """
    cap = kv_capacity_tokens - kv_reserved_tokens
    used = kv_used_tokens
    running = len(kv_tokens_newest_first)
    dropped = 0
    while dropped < running and used + (running - dropped) > cap:
        used -= kv_tokens_newest_first[dropped]
        dropped += 1
    return dropped


def fits_predicted(
    batch: Sequence[tuple[float, float]],
    candidate: tuple[float, float],
    *,
    other_reserved_tokens: float,
    kv_capacity_tokens: int,
) -> bool:
    """Predictive admission: whether the projected KV peak with ``candidate`` fits.

    ``batch`` holds ``(kv_tokens_now, predicted_remaining_tokens)`` of every request running or
    promised memory here (KV in transfer, transferred but not yet joined, migrations on their
    way), ``candidate`` the same for the newcomer (its ``need_tokens``). Each grows by one token
    a step until its predicted end, then frees its memory; ``other_reserved_tokens`` (reserved
    memory not already counted in ``batch``, such as a migration's copy margin; a negative value
    counts as 0) stays constant. True if the peak of that projection
    (``control.ares.projected_peak_kv``, with no horizon) is at most ``kv_capacity_tokens``.

    This test comes on top of ``can_admit``. The caller owns two exceptions, so that it need not
    ask for predictions: without a prediction source every request passes, and an idle instance
    (nothing running, in transfer or joining) always admits, so that a request whose predicted
    peak alone exceeds the capacity does not wait forever. ``batch`` order is kept (ties in the
    predicted remaining length are summed in that order).
    """
    peak = projected_peak_kv(
        [*batch, candidate], float(max(0.0, other_reserved_tokens)), NO_HORIZON_TOKENS
    )
    return peak <= kv_capacity_tokens
