"""Live remaining-length predictions of a decode worker (``serve.prediction``)."""

from __future__ import annotations

import pytest

from tandem.errors import ConfigError
from tandem.serve.prediction import LivePredictor


def test_oracle_knows_forced_lengths_only():
    p = LivePredictor("oracle")
    assert p.remaining("a", 10, 100, ignore_eos=True) == 90
    assert p.remaining("b", 10, 100, ignore_eos=False) is None


def test_progress_mean_is_the_mean_remaining_of_longer_finished_requests():
    p = LivePredictor("progress-mean", min_samples=4)
    for length in (10, 20, 30, 40):
        p.finished(length, natural=True)
    p.finished(999, natural=False)  # cut by max_tokens: not a natural length
    assert p.remaining("a", 15, 500, ignore_eos=False) == pytest.approx((20 + 30 + 40) / 3 - 15)
    assert p.remaining("b", 35, 500, ignore_eos=False) == pytest.approx(5)
    assert p.remaining("c", 35, 37, ignore_eos=False) == pytest.approx(2)  # max_tokens caps it


def test_progress_mean_says_nothing_before_enough_requests_finished():
    p = LivePredictor("progress-mean", min_samples=3)
    p.finished(10, natural=True)
    assert p.remaining("a", 1, 100, ignore_eos=False) is None


def test_a_prediction_counts_down_between_refreshes():
    p = LivePredictor("progress-mean", refresh_tokens=20, min_samples=1)
    p.finished(100, natural=True)
    assert p.remaining("a", 10, 20_000, ignore_eos=False) == 90
    p.finished(10_000, natural=True)  # would change the mean, but no refresh is due
    assert p.remaining("a", 15, 20_000, ignore_eos=False) == 85
    assert p.remaining("a", 30, 20_000, ignore_eos=False) == pytest.approx((100 + 10_000) / 2 - 30)


def test_unknown_sources_are_refused():
    for source in ("tail", "oracle:x", "head:"):
        with pytest.raises(ConfigError):
            LivePredictor(source)
    with pytest.raises(ConfigError, match="identity"):
        LivePredictor("head")  # the head needs to know which model it serves
