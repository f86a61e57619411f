"""Step scripts for the decode admission and preemption rules (``control.admission``)."""

from __future__ import annotations

import random

from tandem.control.admission import (
    can_admit,
    fits_predicted,
    next_step_overflows,
    num_to_preempt,
)


def admit(
    need: int,
    *,
    capacity: int = 1000,
    used: int = 0,
    reserved: int = 0,
    running: int = 0,
    joining: int = 0,
    max_batch: int = 64,
) -> bool:
    return can_admit(
        need,
        kv_capacity_tokens=capacity,
        kv_used_tokens=used,
        kv_reserved_tokens=reserved,
        num_running=running,
        num_joining=joining,
        max_batch_size=max_batch,
    )


def preempt(kv_newest_first: list[int], *, capacity: int = 1000, reserved: int = 0) -> int:
    return num_to_preempt(
        kv_newest_first,
        kv_capacity_tokens=capacity,
        kv_used_tokens=sum(kv_newest_first),
        kv_reserved_tokens=reserved,
    )


# -- can_admit: greedy FCFS --------------------------------------------------------------------


def test_admits_when_kv_fits_beside_next_step() -> None:
    """A request joins when its KV plus one token per running request fits in free memory."""
    assert admit(100, used=500, running=10)


def test_admits_when_exactly_full_after_next_step() -> None:
    """need + running + 1 == capacity - used - reserved is still a fit (the bound is <=)."""
    assert admit(389, used=600, running=10)  # 389 + 10 + 1 == 400 == 1000 - 600
    assert not admit(390, used=600, running=10)


def test_refuses_when_only_the_running_batch_growth_does_not_fit() -> None:
    """Free memory must also hold one more token for every running request."""
    assert not admit(95, capacity=100, running=5)  # 95 fits, 95 + 5 + 1 does not
    assert admit(94, capacity=100, running=5)


def test_reserved_tokens_are_not_free() -> None:
    """Memory promised to transfers and migrations counts as used."""
    assert admit(400, used=500, reserved=0, running=10)
    assert not admit(400, used=500, reserved=100, running=10)


def test_refuses_when_batch_slots_are_taken_by_running_and_joining() -> None:
    """A slot must be free: running plus joining (admitted, not yet running) < max batch."""
    assert not admit(1, running=6, joining=2, max_batch=8)
    assert not admit(1, running=0, joining=8, max_batch=8)
    assert admit(1, running=6, joining=1, max_batch=8)


def test_idle_instance_has_no_exception_in_the_greedy_rule() -> None:
    """An empty instance still needs need + 1 <= capacity (oversized requests are refused)."""
    assert admit(999)
    assert not admit(1000)


# -- next_step_overflows and num_to_preempt ----------------------------------------------------


def test_no_preemption_when_next_step_fits_exactly() -> None:
    """used + running == capacity - reserved fits: nobody is dropped."""
    assert preempt([100, 200, 697]) == 0  # 997 + 3 == 1000
    assert not next_step_overflows(
        kv_capacity_tokens=1000, kv_used_tokens=997, kv_reserved_tokens=0, num_running=3
    )


def test_preempts_the_newest_when_one_token_over() -> None:
    """used + running > capacity - reserved drops the newest request first."""
    assert preempt([50, 60, 400, 491]) == 1  # 1001 + 4 > 1000; then 951 + 3 fits
    assert next_step_overflows(
        kv_capacity_tokens=1000, kv_used_tokens=1001, kv_reserved_tokens=0, num_running=4
    )


def test_preempts_several_newest_until_the_step_fits() -> None:
    """Small newest requests free little memory, so several are dropped."""
    assert preempt([1, 1, 1, 997]) == 2  # 1004 > 1000, 1002 > 1000, 1000 <= 1000


def test_reserved_memory_can_force_preemption() -> None:
    """Reserved memory is not taken back: the running batch shrinks instead."""
    assert preempt([300, 300, 300]) == 0
    assert preempt([300, 300, 300], reserved=100) == 1  # 903 > 900; 603 <= 900


def test_preempts_every_request_at_most() -> None:
    """When even an empty batch cannot take the reservation, the whole batch goes, no more."""
    assert preempt([1000]) == 1  # 1001 > 1000
    assert preempt([10, 10], reserved=2000) == 2


def test_empty_batch_never_preempts() -> None:
    """Nothing running: nothing to drop, and the step never overflows."""
    assert preempt([]) == 0
    assert not next_step_overflows(
        kv_capacity_tokens=0, kv_used_tokens=0, kv_reserved_tokens=10, num_running=0
    )


def test_preemption_is_minimal_and_agrees_with_overflow_test() -> None:
    """num_to_preempt > 0 exactly when next_step_overflows; after it the step fits, and one
    victim fewer would not."""
    rng = random.Random(7)
    for _ in range(2000):
        kv = [rng.randint(1, 300) for _ in range(rng.randint(0, 8))]
        reserved = rng.choice([0, 0, 50, 400])
        n = preempt(kv, reserved=reserved)
        over = next_step_overflows(
            kv_capacity_tokens=1000,
            kv_used_tokens=sum(kv),
            kv_reserved_tokens=reserved,
            num_running=len(kv),
        )
        assert (n > 0) == over
        rest = kv[n:]
        assert not rest or sum(rest) + len(rest) <= 1000 - reserved
        if n > 0:
            before = kv[n - 1 :]
            assert sum(before) + len(before) > 1000 - reserved


# -- fits_predicted: predictive admission ------------------------------------------------------


def fits(batch: list[tuple[float, float]], candidate: tuple[float, float], **kw: float) -> bool:
    other = kw.get("other", 0.0)
    capacity = int(kw.get("capacity", 1000))
    return fits_predicted(
        batch, candidate, other_reserved_tokens=other, kv_capacity_tokens=capacity
    )


def test_request_finishing_early_frees_memory_for_the_newcomer() -> None:
    """The peak counts a request only until its predicted end, not at its end size."""
    # Everyone at their end size: 110 + 600 + 500 = 1210 > 1000. But A ends after 10 steps;
    # the peak is just before C ends: (100 + 200) + 300 * 2 = 900.
    assert fits([(100.0, 10.0), (100.0, 500.0)], (200.0, 300.0))
    # The same A predicted to run 400 steps is alive at C's end: 400 + 300 * 3 = 1300.
    assert not fits([(100.0, 400.0), (100.0, 500.0)], (200.0, 300.0))


def test_predicted_peak_exactly_at_capacity_fits() -> None:
    """A projected peak equal to the capacity is admitted; one token more is not."""
    # Peak: B alone just before its end, 100 + 500 = 600 (both alive peak at 300 + 2 * 100).
    assert fits([(100.0, 500.0)], (200.0, 100.0), capacity=600)
    assert not fits([(100.0, 500.0)], (200.0, 100.0), capacity=599)


def test_peak_now_counts_even_with_no_growth() -> None:
    """At h = 0 the batch holds all its KV now: a candidate that does not fit now is refused."""
    assert not fits([(900.0, 0.0)], (101.0, 0.0))
    assert fits([(900.0, 0.0)], (100.0, 0.0))


def test_other_reserved_tokens_count_as_constant_kv() -> None:
    """Reserved memory not in the batch is added to every point of the projection."""
    assert fits([(100.0, 500.0)], (200.0, 100.0), other=400.0)  # 600 + 400
    assert not fits([(100.0, 500.0)], (200.0, 100.0), other=401.0)


def test_negative_other_reserved_counts_as_zero() -> None:
    """A negative remainder of the reservation does not make room."""
    assert not fits([(100.0, 500.0)], (200.0, 100.0), other=-500.0, capacity=599)


def test_candidate_alone_over_capacity_is_refused() -> None:
    """No idle shortcut inside the rule: the caller admits on an idle instance itself."""
    assert not fits([], (500.0, 600.0))  # 500 + 600 > 1000
    assert fits([], (400.0, 600.0))
