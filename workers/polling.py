"""Polling: one claimed run → one call to Intuned → one recorded outcome and the next poll time.

The decision table (scheduling numbers come from ``relay.policy``):

    Fetched, terminal           cache it; every watching subscription moves to delivery/skipped
    Fetched, not terminal       cache it; next poll after the grown interval (unknown statuses too)
    404                         retried on the backoff curve for RELAY_NOT_FOUND_GRACE, then
                                run.watch_failed(run_not_found)
    401 / 403                   run.watch_failed(intuned_unauthorized)
    429                         next poll after max(backoff, Retry-After)
    5xx, timeout, reset, junk   counted; next poll on the backoff curve; the watch goes on
    older than the timeout      run.watch_failed(watch_timeout), without calling Intuned

A run started through the relay with a sink (a push expected) is polled on the slow safety-net
curve (RELAY_PUSH_FALLBACK_INTERVAL up to RELAY_PUSH_FALLBACK_MAX_INTERVAL) until its push comes;
a push makes it due at once, and afterwards it is polled on the normal curve (Intuned's result may
lag its push). Its watch ends at its own deadline (requestTimeout x maximumAttempts + margin).
"""

from __future__ import annotations

import random

import structlog

from relay.intuned.models import (
    Fetched,
    NotFoundOutcome,
    RateLimited,
    Transient,
    Unauthorized,
)
from relay.model import FailureCode, WatchFailure, now_ms
from relay.policy import PUSH_BURST_MS, poll_delay, watch_poll_interval
from relay.settings import Settings
from relay.store import ClaimedPoll
from relay.store_starts import PushState
from workers.deps import WorkerDeps

log = structlog.get_logger("relay.poll")


def poll_after(
    interval: float,
    s: Settings,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    *,
    maximum: float | None = None,
) -> float:
    """Seconds until the next poll: the jittered interval, never beyond ``maximum`` (default
    RELAY_POLL_MAX_INTERVAL; jitter included) unless Intuned's Retry-After asks for longer."""
    cap = s.poll_max_interval if maximum is None else maximum
    delay = poll_delay(interval, retry_after=retry_after, maximum=cap, rng=rng)
    return delay if retry_after is not None else min(delay, cap)


def _curve(s: Settings, push: PushState) -> tuple[float, float]:
    """(first, maximum) interval of the curve this run is polled on."""
    if push.expects_push and not push.pushed:
        return s.push_fallback_interval, s.push_fallback_max_interval
    return s.poll_interval, s.poll_max_interval


async def poll_claimed(deps: WorkerDeps, claim: ClaimedPoll) -> None:
    """Poll one leased run and record what happened."""
    s, store = deps.settings, deps.store
    rk = claim.run_key
    push = await deps.starts.take_push_news(rk)
    deadline = push.deadline or claim.first_seen + int(s.watch_timeout * 1000)
    if now_ms() >= deadline:
        await _fail(deps, claim, FailureCode.WATCH_TIMEOUT, "run not terminal", polled=False)
        return

    outcome = await deps.intuned.get_result(claim.project_name, claim.run_id)
    now = now_ms()
    curve = _curve(s, push)
    # A push that found the run not terminal yet restarts the normal curve from its start.
    interval = watch_poll_interval(
        0.0 if push.news else claim.interval,
        expects_push=push.expects_push,
        pushed=push.pushed,
        poll=(s.poll_interval, s.poll_max_interval),
        fallback=(s.push_fallback_interval, s.push_fallback_max_interval),
    )

    def due(retry_after: float | None = None) -> int:
        delay = poll_after(interval, s, retry_after, maximum=curve[1])
        return min(now + int(delay * 1000), deadline)

    if isinstance(outcome, Fetched):
        status = outcome.result.status
        state, delivering = await store.record_result(rk, now, status, outcome.raw, due(), interval)
        if delivering:  # first: the webhook should not wait for the log line
            deps.wake("delivery")
        terminal = outcome.result.is_terminal
        if push.expects_push and not terminal:
            await deps.starts.repoll_if_pushed(rk, PUSH_BURST_MS)
        deps.metrics.polls.labels("terminal" if terminal else "pending").inc()
        # A pending answer is the common case (every run, every few seconds): debug only.
        (log.info if terminal else log.debug)(
            "poll", run_key=rk, run_id=claim.run_id, outcome="result", status=status, state=state
        )
        return
    if isinstance(outcome, NotFoundOutcome):
        since = claim.not_found_since or now
        deps.metrics.polls.labels("not_found").inc()
        if now - since >= int(s.not_found_grace * 1000):
            await _fail(deps, claim, FailureCode.RUN_NOT_FOUND, "Intuned answered 404", polled=True)
            return
        await store.record_poll_error(rk, now, due(), interval, not_found=True)
        log.info("poll", run_key=rk, run_id=claim.run_id, outcome="not_found")
        return
    if isinstance(outcome, Unauthorized):
        deps.metrics.polls.labels("unauthorized").inc()
        await _fail(
            deps,
            claim,
            FailureCode.INTUNED_UNAUTHORIZED,
            f"Intuned answered {outcome.status_code}",
            polled=True,
        )
        return
    if isinstance(outcome, RateLimited):
        deps.metrics.polls.labels("rate_limited").inc()
        await store.record_poll_error(rk, now, due(outcome.retry_after), interval, not_found=False)
        log.info(
            "poll",
            run_key=rk,
            run_id=claim.run_id,
            outcome="rate_limited",
            retry_after=outcome.retry_after,
        )
        return
    assert isinstance(outcome, Transient)
    deps.metrics.polls.labels("transient").inc()
    await store.record_poll_error(rk, now, due(), interval, not_found=False)
    log.info(
        "poll",
        run_key=rk,
        run_id=claim.run_id,
        outcome="transient",
        kind=outcome.kind,
        status_code=outcome.status_code,
    )


async def _fail(
    deps: WorkerDeps, claim: ClaimedPoll, code: FailureCode, message: str, *, polled: bool
) -> None:
    _, delivering = await deps.store.record_watch_failure(
        claim.run_key, now_ms(), WatchFailure(code, message), polled=polled
    )
    log.info("watch_failed", run_key=claim.run_key, run_id=claim.run_id, code=code.value)
    if delivering:
        deps.wake("delivery")
