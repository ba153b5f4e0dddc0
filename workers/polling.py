"""Polling: one claimed run → one call to Intuned → one recorded outcome and the next poll time.

The decision table (scheduling numbers come from ``relay.policy``):

    Fetched, terminal           cache it; every watching subscription moves to delivery/skipped
    Fetched, not terminal       cache it; next poll after the grown interval (unknown statuses too)
    Fetched, > max result bytes run.watch_failed(result_too_large); nothing stored
    404                         retried on the backoff curve for RELAY_NOT_FOUND_GRACE, then
                                run.watch_failed(run_not_found)
    401 / 403                   run.watch_failed(intuned_unauthorized)
    429                         next poll after max(backoff, Retry-After)
    5xx, timeout, reset, junk   counted; next poll on the backoff curve; the watch goes on
    at or past the timeout      one last look: a terminal answer is delivered as above (the run
                                may have ended since the last poll, or while Redis was away);
                                anything else is run.watch_failed(watch_timeout)

A run started through the relay with a sink (a push expected) is polled on the slow safety-net
curve (RELAY_PUSH_FALLBACK_INTERVAL up to RELAY_PUSH_FALLBACK_MAX_INTERVAL) until its push comes,
except while it has run.started subscribers and was not seen started yet (the push tells only
the end); a push makes it due at once (``relay.store.starts``), and afterwards it is polled on
the normal curve from its start (Intuned's result may lag its own push). Its watch ends at its
own deadline (requestTimeout x maximumAttempts + margin) instead of RELAY_WATCH_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import random

import structlog

from relay.intuned.models import (
    Fetched,
    NotFoundOutcome,
    RateLimited,
    Transient,
    Unauthorized,
)
from relay.model import DueWork, FailureCode, PollRecord, WatchFailure
from relay.policy import poll_delay, watch_poll_interval
from relay.settings import Settings
from relay.store import ClaimedPoll
from relay.store.types import FanOutStep
from workers.deps import WorkerDeps
from workers.operational import intuned_accepted, intuned_refused

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


def next_interval(claim: ClaimedPoll, s: Settings) -> tuple[float, float]:
    """(the next poll interval, the maximum of its curve) for this claim."""
    # Intuned's push tells the end only: a run.started subscriber needs the normal curve.
    expects_push = claim.px and not claim.sw
    on_fallback = expects_push and not claim.pg
    interval = watch_poll_interval(
        0.0 if claim.pn else claim.iv,  # a push found the run going: the curve starts over
        expects_push=expects_push,
        pushed=claim.pg,
        poll=(s.poll_interval, s.poll_max_interval),
        fallback=(s.push_fallback_interval, s.push_fallback_max_interval),
    )
    return interval, s.push_fallback_max_interval if on_fallback else s.poll_max_interval


async def poll_claimed(deps: WorkerDeps, claim: ClaimedPoll) -> None:
    """Poll one leased run (or run its pending fan-out) and record what happened."""
    if claim.kind is DueWork.FANOUT:
        await fan_out(deps, claim.rd)
        return
    s, watches = deps.settings, deps.store.watches
    rd = claim.rd
    # Redis's clock, like claim.now; a run started through the relay has its own deadline.
    deadline = claim.dl or claim.first_seen + int(s.watch_timeout * 1000)
    started = deps.clock()
    outcome = await deps.intuned.get_result(claim.project, claim.run_id)
    if claim.now >= deadline and not (isinstance(outcome, Fetched) and outcome.result.is_terminal):
        await _fail(deps, claim, FailureCode.WATCH_TIMEOUT, "run not terminal")
        return
    now = claim.now + max(0, deps.clock() - started)  # Redis's clock, about
    interval, maximum = next_interval(claim, s)

    def delay(retry_after: float | None = None) -> int:
        after = poll_after(interval, s, retry_after, maximum=maximum)
        return max(0, min(int(after * 1000), deadline - now))

    if isinstance(outcome, Fetched):
        await intuned_accepted(deps)
        await _fetched(deps, claim, outcome, delay(), interval)
        return
    if isinstance(outcome, NotFoundOutcome):
        since = claim.nf or now
        deps.metrics.polls.labels("not_found").inc()
        if now - since >= int(s.not_found_grace * 1000):
            await _fail(deps, claim, FailureCode.RUN_NOT_FOUND, "Intuned answered 404")
            return
        await watches.record_poll_error(rd, delay(), interval, not_found=True)
        log.info("poll", run=rd, project=claim.project, run_id=claim.run_id, outcome="not_found")
        return
    if isinstance(outcome, Unauthorized):
        deps.metrics.polls.labels("unauthorized").inc()
        await intuned_refused(deps, outcome.status_code)
        await _fail(
            deps,
            claim,
            FailureCode.INTUNED_UNAUTHORIZED,
            f"Intuned answered {outcome.status_code}",
        )
        return
    if isinstance(outcome, RateLimited):
        await _poll_again(deps, claim, delay(outcome.retry_after), interval, outcome)
        return
    assert isinstance(outcome, Transient)
    await _poll_again(deps, claim, delay(), interval, outcome)


async def _poll_again(
    deps: WorkerDeps,
    claim: ClaimedPoll,
    delay_ms: int,
    interval: float,
    outcome: RateLimited | Transient,
) -> None:
    """A poll to try again (rate limited, or a transient failure): count it, make the run's
    next poll due in ``delay_ms`` and log what went wrong."""
    fields: dict[str, object]
    if isinstance(outcome, RateLimited):
        name, fields = "rate_limited", {"retry_after": outcome.retry_after}
    else:
        name, fields = "transient", {"kind": outcome.kind, "status_code": outcome.status_code}
    deps.metrics.polls.labels(name).inc()
    await deps.store.watches.record_poll_error(claim.rd, delay_ms, interval, not_found=False)
    log.info("poll", run=claim.rd, run_id=claim.run_id, outcome=name, **fields)


async def _fetched(
    deps: WorkerDeps, claim: ClaimedPoll, outcome: Fetched, delay_ms: int, interval: float
) -> None:
    """Record a fetched result: stored once for the run; terminal ends the watch and fans out."""
    if len(outcome.raw) > deps.settings.max_result_bytes:
        deps.metrics.polls.labels("too_large").inc()
        message = (
            f"the result is {len(outcome.raw)} bytes; RELAY_MAX_RESULT_BYTES is "
            f"{deps.settings.max_result_bytes}"
        )
        await _fail(deps, claim, FailureCode.RESULT_TOO_LARGE, message)
        return
    status = outcome.result.status
    watches = deps.store.watches
    record = watches.record_result(claim.rd, status, outcome.raw, delay_ms, interval)
    first: FanOutStep | None = None
    if outcome.result.is_terminal:
        # Seam "terminal record + first fan-out in one round trip": both scripts go out in
        # the same pipeline, record first (gather starts them in order), so the terminal
        # answer reaches the delivery pump one Redis round trip sooner (interleaved A/B on a
        # loaded box: relay-added latency p50 34.7 -> 28.3 ms, p99 124 -> 115 ms; NOTES.md).
        # A fan-out of a run someone else ended is what that worker would do anyway; of a
        # live run, a no-op.
        rec, first = await asyncio.gather(record, watches.fan_out(claim.rd))
    else:
        rec = await record
    if rec.notices:
        await fan_out_notices(deps, claim.rd)
    terminal = rec.outcome == PollRecord.TERMINAL
    deps.metrics.polls.labels("terminal" if outcome.result.is_terminal else "pending").inc()
    if terminal:
        await fan_out(deps, claim.rd, first)
    # A pending answer is the common case (every run, every few seconds): debug only, and not
    # even built unless debug is on.
    if not (terminal or log.is_enabled_for(logging.DEBUG)):
        return
    (log.info if terminal else log.debug)(
        "poll",
        run=claim.rd,
        run_id=claim.run_id,
        outcome="result",
        status=status,
        state=rec.outcome,
    )


async def fan_out(deps: WorkerDeps, rd: str, first: FanOutStep | None = None) -> None:
    """Move an ended run's subscribers to delivery, a bounded batch per call, to the end
    (``first``: a step already made)."""
    step = first
    while True:
        if step is None:
            step = await deps.store.watches.fan_out(rd)
        if step.delivering:
            deps.wake("delivery")
        if step.done:
            return
        step = None


async def fan_out_notices(deps: WorkerDeps, rd: str) -> None:
    """Make a run's run.started events due, a bounded batch per call, to the end."""
    while True:
        step = await deps.store.watches.fan_out_notices(rd)
        if step.due:
            deps.wake("started")
        if step.done:
            return


async def _fail(deps: WorkerDeps, claim: ClaimedPoll, code: FailureCode, message: str) -> None:
    rec = await deps.store.watches.record_watch_failure(claim.rd, WatchFailure(code, message))
    log.info(
        "watch_failed", run=claim.rd, project=claim.project, run_id=claim.run_id, code=code.value
    )
    if rec.outcome == PollRecord.FAILED:
        await fan_out(deps, claim.rd)
