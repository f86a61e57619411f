"""Synthetic generators and transforms: seeded, deterministic, and doing what they say."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.errors import ConfigError
from tandem.workload.request import workload_from_arrays
from tandem.workload.synthetic import (
    EmpiricalLength,
    FixedLength,
    LognormalLength,
    UniformLength,
    parse_length_spec,
    synthetic_workload,
)
from tandem.workload.transforms import (
    cap_lengths,
    limit,
    repeat,
    scale_lengths,
    scale_rate,
    span,
    time_window,
)


def make(seed: int = 0, cv: float = 1.0, n: int = 20000):
    return synthetic_workload(
        num_requests=n,
        rate_rps=10.0,
        cv=cv,
        input_len=UniformLength(10, 20),
        output_len=LognormalLength(200, 1.0),
        seed=seed,
    )


def test_same_seed_same_workload_and_other_seed_differs() -> None:
    assert make(1).requests == make(1).requests
    assert make(1).requests != make(2).requests


@pytest.mark.parametrize("cv", [1.0, 3.0, 0.5])
def test_arrival_rate_and_cv_match_the_request(cv: float) -> None:
    w = make(cv=cv)
    gaps = np.diff(w.arrivals_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)


def test_length_distributions() -> None:
    rng = np.random.default_rng(0)
    assert set(FixedLength(7).sample(5, rng)) == {7}
    u = UniformLength(3, 5).sample(1000, rng)
    assert u.min() == 3 and u.max() == 5
    ln = LognormalLength(500, 2.0, max_tokens=4000).sample(50000, rng)
    assert ln.min() >= 1 and ln.max() <= 4000
    assert set(EmpiricalLength((4, 9)).sample(100, rng)) == {4, 9}
    assert parse_length_spec("lognormal:100:1.5:900") == LognormalLength(100.0, 1.5, 900)
    with pytest.raises(ConfigError, match="bad length spec"):
        parse_length_spec("normal:5")


def test_bad_synthetic_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="rate"):
        synthetic_workload(
            num_requests=5, rate_rps=-1, input_len=FixedLength(1), output_len=FixedLength(1)
        )
    with pytest.raises(ConfigError):
        FixedLength(0)


W = workload_from_arrays("t", [0.0, 1.0, 2.0, 3.0], [10, 20, 30, 40], [5, 50, 500, 5000])


def test_scale_rate_divides_arrival_times() -> None:
    assert [r.arrival_s for r in scale_rate(W, 2.0)] == [0.0, 0.5, 1.0, 1.5]


def test_time_window_keeps_half_open_interval_and_shifts() -> None:
    w = time_window(W, 1.0, 3.0)
    assert [(r.request_id, r.arrival_s, r.prompt_tokens) for r in w] == [(0, 0.0, 20), (1, 1.0, 30)]


def test_cap_and_scale_lengths() -> None:
    assert [r.output_tokens for r in cap_lengths(W, max_output_tokens=100)] == [5, 50, 100, 100]
    assert [r.prompt_tokens for r in scale_lengths(W, prompt_factor=0.01)] == [1, 1, 1, 1]


def test_limit_and_repeat() -> None:
    assert len(limit(W, 2)) == 2
    r = repeat(W, 3)
    assert len(r) == 12 and [x.request_id for x in r] == list(range(12))
    assert np.all(np.diff(r.arrivals_s) > 0)
    assert r[4].arrival_s == pytest.approx(4.0)


def test_span_cuts_a_long_trace_and_repeats_a_short_one() -> None:
    # W: arrivals 0, 1, 2, 3 s; a repeat starts one mean gap after the last.
    assert [r.arrival_s for r in span(W, 2.5)] == [0.0, 1.0, 2.0]
    long = span(W, 6.0)
    assert [r.arrival_s for r in long] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert [r.prompt_tokens for r in long][4:] == [W[0].prompt_tokens, W[1].prompt_tokens]


def test_transforms_record_notes() -> None:
    assert scale_rate(W, 2.0).notes == ("rate x2",)


def test_random_workload_follows_vllms_random_dataset() -> None:
    """Fixed lengths at range ratio 0, uniform in len*(1-R)..len*(1+R) otherwise; gamma gaps
    of shape `burstiness` at the rate; seeded (issue 18 item 4)."""
    from tandem.workload.synthetic import random_workload

    fixed = random_workload(input_len=512, output_len=64, rate_rps=10.0, num_prompts=2000)
    assert set(fixed.prompt_tokens.tolist()) == {512} and set(fixed.output_tokens.tolist()) == {64}
    assert fixed.rate_rps == pytest.approx(10.0, rel=0.1)
    ranged = random_workload(
        input_len=1000, output_len=100, range_ratio=0.5, rate_rps=4.0, burstiness=0.25,
        num_prompts=4000, seed=3,
    )  # fmt: skip
    assert ranged.prompt_tokens.min() >= 500 and ranged.prompt_tokens.max() <= 1500
    assert ranged.prompt_tokens.mean() == pytest.approx(1000, rel=0.05)
    gaps = np.diff(ranged.arrivals_s)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.15)  # CV = 1/sqrt(0.25)
    again = random_workload(
        input_len=1000, output_len=100, range_ratio=0.5, rate_rps=4.0, burstiness=0.25,
        num_prompts=4000, seed=3,
    )  # fmt: skip
    assert again.requests == ranged.requests
    burst = random_workload(input_len=8, output_len=8, num_prompts=5)  # rate inf: all at 0 s
    assert burst.arrivals_s.tolist() == [0.0] * 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"range_ratio": 1.0}, "--random-range-ratio"),
        ({"rate_rps": float("nan")}, "--request-rate"),
        ({"burstiness": 0.0}, "--burstiness"),
        ({"num_prompts": 0}, "--num-prompts"),
        ({"input_len": 0}, "--random-input-len"),
    ],
)
def test_random_workload_refuses_nonsense(kwargs: dict, message: str) -> None:
    from tandem.workload.synthetic import random_workload

    args = {"input_len": 10, "output_len": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        random_workload(**args)
