"""Pure scheduling policy: when to poll next, when to retry a delivery. No I/O, no Redis.

Polling backs off geometrically from ``poll_interval`` to ``poll_max_interval`` (x1.5 per poll,
+-10 % jitter so thousands of runs registered together spread out). Errors from Intuned back off
on the same curve (and a 429 waits at least its Retry-After). Delivery retries follow the
configured schedule with +-20 % jitter; a receiver's Retry-After is honoured up to the schedule's
longest delay.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

POLL_GROWTH: Final = 1.5
POLL_JITTER: Final = 0.10
RETRY_JITTER: Final = 0.20


def jittered(seconds: float, fraction: float, rng: random.Random | None = None) -> float:
    """``seconds`` moved randomly by up to +-``fraction`` of itself."""
    r = rng or random
    return max(0.0, seconds * (1.0 + r.uniform(-fraction, fraction)))


def next_poll_interval(current: float, base: float, maximum: float) -> float:
    """The interval after ``current``: grown by x1.5, clamped to [base, maximum]."""
    if current <= 0:
        return base
    return min(maximum, max(base, current * POLL_GROWTH))


def poll_delay(
    interval: float,
    *,
    retry_after: float | None = None,
    maximum: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds until the next poll: the jittered interval, at least a 429's Retry-After."""
    delay = jittered(interval, POLL_JITTER, rng)
    if retry_after is not None:
        # Honour Intuned's wish, but a broken header must not park a run for days.
        delay = max(delay, min(retry_after, max(maximum * 10, 600.0)))
    return delay


def retry_delay(
    attempts_made: int,
    schedule: Sequence[float],
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next delivery attempt, or None when the schedule is used up.

    ``attempts_made`` counts the attempts of this series so far (the first failed attempt is 1).
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    delay = jittered(schedule[attempts_made - 1], RETRY_JITTER, rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


# ---- runs started through the relay (contract §7) ----------------------------------------------

# Intuned's defaults for a start body without them (intuned-api.md §2).
INTUNED_DEFAULT_REQUEST_TIMEOUT: Final = 600.0
INTUNED_DEFAULT_MAX_ATTEMPTS: Final = 3
# After a push, another push of the same run within this window causes no further poll.
PUSH_BURST_MS: Final = 1000


def run_deadline_seconds(request_timeout: object, retry: object, margin: float) -> float:
    """How long to watch a run the relay started: requestTimeout x maximumAttempts + margin.

    ``request_timeout`` and ``retry`` are the start body's values as given (anything JSON);
    a missing or unusable one counts as Intuned's default.
    """
    timeout = INTUNED_DEFAULT_REQUEST_TIMEOUT
    if _positive_number(request_timeout):
        timeout = float(request_timeout)  # type: ignore[arg-type]
    attempts = INTUNED_DEFAULT_MAX_ATTEMPTS
    if isinstance(retry, dict) and _positive_number(retry.get("maximumAttempts")):
        attempts = int(retry["maximumAttempts"])
    return timeout * max(1, attempts) + margin


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def watch_poll_interval(
    current: float,
    *,
    expects_push: bool,
    pushed: bool,
    poll: tuple[float, float],
    fallback: tuple[float, float],
) -> float:
    """The next poll interval of a run: the safety-net curve while a push is still awaited.

    ``poll`` and ``fallback`` are (first, maximum) intervals. A run whose push arrived but
    whose result was not terminal yet goes back to the normal curve (Intuned's result endpoint
    may lag its own push).
    """
    base, maximum = fallback if expects_push and not pushed else poll
    return next_poll_interval(current, base, maximum)
