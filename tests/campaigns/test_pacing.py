"""Calls per second (a token bucket on an injected clock) and retry back-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentplatform.campaigns.pacing import MAX_BACKOFF, TokenBucket, backoff, spacing

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_a_new_bucket_allows_one_seconds_burst_then_the_rate() -> None:
    bucket = TokenBucket.for_rate(2.0, None, None, T0)
    assert bucket.take(10, T0) == 2
    assert bucket.take(10, T0 + timedelta(seconds=0.4)) == 0
    assert bucket.take(10, T0 + timedelta(seconds=0.5)) == 1
    assert bucket.take(10, T0 + timedelta(seconds=1.5)) == 2


def test_a_slow_rate_places_one_call_every_few_seconds() -> None:
    bucket = TokenBucket.for_rate(0.25, None, None, T0)
    taken = [bucket.take(5, T0 + timedelta(seconds=s)) for s in range(13)]
    assert sum(taken) == 4 and [s for s, n in enumerate(taken) if n] == [0, 4, 8, 12]


def test_an_idle_bucket_does_not_save_up_more_than_its_capacity() -> None:
    bucket = TokenBucket.for_rate(1.0, 0.0, T0, T0)
    assert bucket.take(100, T0 + timedelta(hours=1)) == 1


def test_a_clock_stepping_back_mints_no_tokens() -> None:
    bucket = TokenBucket.for_rate(1.0, 0.0, T0, T0)
    assert bucket.take(1, T0 - timedelta(seconds=30)) == 0
    assert bucket.take(1, T0 + timedelta(seconds=1)) == 1


def test_tokens_not_used_are_given_back() -> None:
    bucket = TokenBucket.for_rate(3.0, None, None, T0)
    assert bucket.take(3, T0) == 3
    bucket.give_back(2)
    assert bucket.take(3, T0) == 2


def test_a_burst_is_spread_evenly_over_the_second() -> None:
    assert [spacing(i, 4.0) for i in range(4)] == [0.0, 0.25, 0.5, 0.75]


def test_back_off_doubles_per_attempt_up_to_a_day() -> None:
    first = timedelta(minutes=10)
    assert [backoff(n, first) for n in (1, 2, 3)] == [first, first * 2, first * 4]
    assert backoff(20, first) == MAX_BACKOFF
