"""TokenBucket: the per-connection frame rate limit; the caller supplies the time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock.asyncio.ratelimit import TokenBucket


def takes(bucket: TokenBucket, now: float, count: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


def test_a_full_bucket_allows_a_burst_then_refuses():
    bucket = TokenBucket(rate=1, burst=5)
    assert takes(bucket, 0.0, 7) == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_rate():
    bucket = TokenBucket(rate=4, burst=3)  # times in quarters: exact in binary
    assert takes(bucket, 100.0, 4) == [True, True, True, False]
    assert bucket.take(100.125) is False  # half a token
    assert bucket.take(100.25) is True  # one token: 0.25 s at 4/s
    assert bucket.take(100.25) is False
    assert takes(bucket, 100.75, 3) == [True, True, False]


def test_a_long_pause_refills_only_up_to_the_burst():
    bucket = TokenBucket(rate=100, burst=4)
    takes(bucket, 0.0, 4)
    assert takes(bucket, 3600.0, 6) == [True] * 4 + [False] * 2


def test_fractional_rates_and_bursts():
    bucket = TokenBucket(rate=0.5, burst=1.5)
    assert takes(bucket, 0.0, 2) == [True, False]  # 0.5 left
    assert bucket.take(0.9) is False  # 0.95
    assert bucket.take(1.0) is True  # 1.0


def test_refused_takes_do_not_spend_tokens():
    bucket = TokenBucket(rate=1, burst=1)
    assert bucket.take(0.0)
    assert takes(bucket, 0.5, 10) == [False] * 10
    assert bucket.take(1.0)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 5), (-1, 5), (1, 0), (1, 0.5), (1, -3)],
)
def test_invalid_arguments_raise(rate, burst):
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        TokenBucket(rate, burst)


@pytest.mark.parametrize(("rate", "burst"), [(math.nan, 5), (1, math.nan), (math.nan, math.nan)])
def test_nan_arguments_raise(rate, burst):
    # NaN compares false with everything: unchecked, it made a bucket that never limits.
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_an_infinite_rate_never_limits():
    bucket = TokenBucket(math.inf, 2)
    assert takes(bucket, 0.0, 2) == [True, True]
    assert takes(bucket, 0.001, 50) == [True] * 50


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate, burst, gaps):
    bucket = TokenBucket(rate, burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += bucket.take(now)
        assert allowed <= burst + rate * now + 1e-6
    # and never more than burst at any one instant after a long pause
    later = now + 10_000
    assert sum(takes(bucket, later, burst + 5)) == burst


def test_take_many_spends_what_there_is_and_says_how_many_were_missing():
    bucket = TokenBucket(rate=10, burst=20)
    assert bucket.take_many(15, 0.0) == 0
    assert bucket.take_many(15, 0.0) == 10  # 5 left
    assert bucket.take_many(0, 0.0) == 0
    assert bucket.take_many(3, 0.5) == 0  # 5 more tokens came in half a second
    assert takes(bucket, 0.5, 3) == [True, True, False]
