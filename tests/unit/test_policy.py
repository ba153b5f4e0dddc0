"""``relay.policy``, the pure scheduling core: poll back-off, poll delays, delivery retry delays."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.policy import (
    POLL_GROWTH,
    POLL_JITTER,
    RETRY_JITTER,
    jittered,
    next_poll_interval,
    poll_delay,
    retry_delay,
)

SCHEDULE = (5.0, 300.0, 1800.0)


def test_poll_interval_grows_by_the_factor_up_to_the_maximum() -> None:
    intervals = [3.0]
    for _ in range(8):
        intervals.append(next_poll_interval(intervals[-1], 3.0, 30.0))
    assert intervals[:4] == [3.0, 3.0 * POLL_GROWTH, 3.0 * POLL_GROWTH**2, 3.0 * POLL_GROWTH**3]
    assert intervals[-1] == 30.0
    assert intervals == sorted(intervals)


@pytest.mark.parametrize(("current", "expected"), [(0.0, 3.0), (-1.0, 3.0), (1.0, 3.0)])
def test_poll_interval_starts_at_and_never_drops_below_the_base(
    current: float, expected: float
) -> None:
    assert next_poll_interval(current, 3.0, 30.0) == expected


@given(st.floats(0.0, 1e6), st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_jitter_stays_within_its_fraction_and_never_negative(
    seconds: float, fraction: float, seed: int
) -> None:
    got = jittered(seconds, fraction, random.Random(seed))
    assert got >= 0.0
    assert seconds * (1 - fraction) - 1e-9 <= got <= seconds * (1 + fraction) + 1e-9


def test_poll_delay_is_the_jittered_interval_without_retry_after() -> None:
    rng = random.Random(7)
    delays = [poll_delay(10.0, maximum=30.0, rng=rng) for _ in range(200)]
    assert all(10.0 * (1 - POLL_JITTER) <= d <= 10.0 * (1 + POLL_JITTER) for d in delays)
    assert len(set(delays)) > 100  # thousands of runs registered together spread out


def test_poll_delay_honours_retry_after_but_caps_a_broken_one() -> None:
    assert poll_delay(3.0, retry_after=120.0, maximum=30.0, rng=random.Random(1)) == 120.0
    # A Retry-After of a week parks the run at most max(10 x maximum, 600 s).
    assert poll_delay(3.0, retry_after=7 * 86400.0, maximum=30.0) == 600.0
    assert poll_delay(3.0, retry_after=7 * 86400.0, maximum=120.0) == 1200.0
    # A Retry-After shorter than the interval does not speed polling up.
    assert poll_delay(10.0, retry_after=0.0, maximum=30.0, rng=random.Random(1)) >= 9.0


@pytest.mark.parametrize("attempts", [1, 2, 3])
def test_retry_delay_follows_the_schedule_with_jitter(attempts: int) -> None:
    step = SCHEDULE[attempts - 1]
    got = retry_delay(attempts, SCHEDULE, rng=random.Random(attempts))
    assert got is not None
    assert step * (1 - RETRY_JITTER) <= got <= step * (1 + RETRY_JITTER)


@pytest.mark.parametrize("attempts", [0, -1, len(SCHEDULE) + 1, 99])
def test_retry_delay_is_none_outside_the_schedule(attempts: int) -> None:
    assert retry_delay(attempts, SCHEDULE) is None


def test_retry_after_is_honoured_up_to_the_longest_delay() -> None:
    assert retry_delay(1, SCHEDULE, retry_after=60.0, rng=random.Random(3)) == 60.0
    assert retry_delay(1, SCHEDULE, retry_after=10 * 86400.0) == max(SCHEDULE)
    low = retry_delay(2, SCHEDULE, retry_after=1.0, rng=random.Random(3))
    assert low is not None
    assert low >= 300.0 * (1 - RETRY_JITTER)
