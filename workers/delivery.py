"""Delivery: one claimed subscription → one signed POST → one recorded attempt.

The event body is a pure function of the run's stored result (kept once per run, alive while
any delivery of it is pending) and the subscription (its document, event type, occurrence
time and watch failure, all fixed when the run ended): every retry, redelivery and restarted
worker rebuilds the same bytes and sends them under the same ``webhook-id``, with a fresh
``webhook-timestamp`` and signature. Nothing is stored per subscription but the attempt.
A delivery never creates a signing secret: without one the attempt fails, logged and recorded.

Before anything else the attempt asks the worker's ``HostGate`` (``relay.webhooks.hostgate``):
an attempt whose host is at its in-flight cap is parked in the worker (no pool slot) or put back
into the due set for later (``defer_deliveries``), as is one behind an open breaker; neither
takes an attempt from the subscription's retry budget.
"""

from __future__ import annotations

import asyncio
from typing import Final, NamedTuple

import structlog

from relay.model import Attempt, DeliveryOutcome, Lane
from relay.observability import HotLine
from relay.policy import retry_delay
from relay.services import events
from relay.store import ClaimedDelivery
from relay.webhooks.hostgate import ADMITTED, Admission, Verdict, attempt_verdict, host_key
from relay.webhooks.sender import AttemptResult
from relay.webhooks.signing import webhook_headers, webhook_id
from workers.deps import WorkerDeps
from workers.operational import subscription_ending

log = structlog.get_logger("relay.delivery")
attempt_log = HotLine("relay.delivery")  # one line per attempt: the hot path's own logger

NO_SECRET: Final = "no_signing_secret"  # noqa: S105 - an error class, not a secret


async def event_body(deps: WorkerDeps, claim: ClaimedDelivery) -> bytes:
    """This subscription's event body, from the run's stored result."""
    raw = claim.result
    if not claim.result_known:  # too big to ride along with the claim
        cached = await deps.store.deliveries.result(claim.run_digest)
        raw = cached.body if cached is not None else None
    return body_for(claim, raw)


def body_for(claim: ClaimedDelivery, raw: bytes | None) -> bytes:
    """The event body: a pure function of the claim and the run's stored result."""
    return events.event_body(claim.doc, claim.event_type, claim.occurred_at, claim.failure, raw)


async def _send(deps: WorkerDeps, claim: ClaimedDelivery, now: int, msg_id: str) -> AttemptResult:
    if not claim.secrets:
        log.error(
            "delivery_without_secret",
            subscription_id=claim.subscription_id,
            client=claim.doc.client,
            detail="the client has no signing secret (created by the API only); not sent",
        )
        return AttemptResult(outcome=DeliveryOutcome.RETRY, error=NO_SECRET, duration_ms=0.0)
    body = await event_body(deps, claim)
    # The client's own headers (validated at registration) first: none can shadow ours.
    headers = {
        **claim.doc.headers,
        **webhook_headers(msg_id, now // 1000, body, list(claim.secrets)),
    }
    return await deps.sender.send_held(claim.doc.callback_url, body, headers)  # in _turns' slot


async def deliver_claimed(deps: WorkerDeps, claim: ClaimedDelivery) -> None:
    """Deliver a leased subscription unless its host's gate parks or defers it.

    The host's turn lasts the POST, not the record: when a POST ends, the gate may hand its
    turn to a parked attempt to the same host, which runs next in this task, pump slot and POST
    slot (``_turns``) while the ended attempt's record is written beside it. The task (and its
    pump slot) ends once no attempt is handed over and every one of its attempts is recorded, so
    the slots of a record group still come free together when the group lands.
    """
    gate = deps.gate
    host = host_key(claim.doc.callback_url)
    admission = gate.admit(host, claim)
    if admission.parked:
        return
    if not admission.admitted:
        await _defer(deps, [claim], admission.retry_in, admission.reason)
        return
    recording: set[asyncio.Task[None]] = set()
    try:
        last, sent, evicted = await _turns(deps, host, claim, admission, recording)
        if evicted:  # the breaker opened: its parked attempts wait out the cooldown
            await _defer(deps, evicted, gate.cooldown, "breaker_open")
        if sent is not None:
            await _record(deps, last, sent)
    except asyncio.CancelledError:  # a stopping pump gave up on it: on its records too
        for task in recording:
            task.cancel()
        raise
    finally:
        if recording:
            await asyncio.wait(recording)


async def _turns(
    deps: WorkerDeps,
    host: str,
    claim: ClaimedDelivery,
    admission: Admission,
    recording: set[asyncio.Task[None]],
) -> tuple[ClaimedDelivery, Sent | None, list[ClaimedDelivery]]:
    """The host's turns in one POST slot: ``claim``'s POST, then that of each parked attempt
    the gate hands the turn to, their records written in ``recording`` tasks meanwhile. Returns
    the last attempt with its POST (still to be recorded), and any attempts the gate evicted.

    A handed-over attempt keeps the slot: it never queues again behind other hosts' attempts,
    so parked (at most ``max_park``, half its lease) and then sent (at most the timeout), it is
    recorded within its lease. Queued for a slot, it could wait one more timeout (every slot
    held by black holes) and outlast the lease: another worker would send it again.
    """
    gate, current = deps.gate, claim
    async with deps.sender.slots:
        while True:
            waited = gate.waited()  # the worker's waits for a core meanwhile are its own
            sent = await _post(deps, current)
            verdict: Verdict = "neutral"
            duration = 0.0
            if sent is not None:
                verdict = attempt_verdict(sent.result.status_code, sent.result.error)
                duration = sent.result.duration_ms / 1000
            following = gate.done(host, admission, verdict, duration, gate.waited() - waited)
            if following is None:  # no parked attempt takes the turn; if the breaker opened,
                return current, sent, gate.evict(host)  # evict hands back the parked ones
            if sent is not None:
                task = asyncio.create_task(_record(deps, current, sent))
                recording.add(task)
                task.add_done_callback(recording.discard)
            current, admission = following, ADMITTED
            # One loop pass before the next POST: the socket of a connection the ended attempt
            # gave up (a timeout) is closed on the next pass (asyncio's transport.close), so it
            # is gone before the next attempt opens one and the host never sees cap + 1.
            await asyncio.sleep(0)


async def _defer(
    deps: WorkerDeps, claims: list[ClaimedDelivery], seconds: float, reason: str | None
) -> None:
    """Put leased deliveries back into the due set for later; no attempt is counted."""
    # Due times are Redis's clock: count from the claim's (read by the claim script).
    until = max(c.now for c in claims) + int(seconds * 1000)
    for lane in {c.lane for c in claims}:
        sids = [c.subscription_id for c in claims if c.lane is lane]
        await deps.store.deliveries.defer_deliveries(sids, until, lane)
    deps.metrics.deferrals.labels(reason or "host_busy").inc(len(claims))


class Sent(NamedTuple):
    """An attempt's POST, ended (its record is still to be written)."""

    result: AttemptResult
    at: int  # this process's wall clock when it started (ms)
    msg_id: str


async def _post(deps: WorkerDeps, claim: ClaimedDelivery) -> Sent | None:
    """Make one delivery attempt's POST for a leased subscription (None: it failed unsent)."""
    try:
        now = deps.clock()
        msg_id = webhook_id(claim.subscription_id, claim.event_type)
        return Sent(await _send(deps, claim, now, msg_id), now, msg_id)
    except Exception as exc:  # the lease brings it back; the parked ones must go on
        _log_error(claim, exc)
        return None


def _log_error(claim: ClaimedDelivery, exc: Exception) -> None:
    log.error(
        "delivery_error", subscription_id=claim.subscription_id, error=repr(exc), exc_info=True
    )


async def _record(deps: WorkerDeps, claim: ClaimedDelivery, sent: Sent) -> None:
    """Record an attempt whose POST ended: its log entry, next state and metrics (a failure
    is logged, not raised: the lease brings the delivery back)."""
    try:
        s = deps.settings
        result, now, msg_id = sent
        number = claim.attempts_in_series + 1
        outcome = DeliveryOutcome(result.outcome)
        delay_ms = 0
        if outcome is DeliveryOutcome.RETRY:
            delay = retry_delay(number, s.retry_schedule, retry_after=result.retry_after)
            if delay is None:
                outcome = DeliveryOutcome.EXHAUSTED
            else:
                delay_ms = int(delay * 1000)
        terminal_lane = claim.lane is Lane.TERMINAL
        attempt = Attempt(
            attempt=number,
            at=now,
            status_code=result.status_code,
            error=result.error,
            duration_ms=round(result.duration_ms, 2),
            response=result.response_excerpt,
            series=claim.series,
            event_type=None if terminal_lane else claim.event_type,
        )
        if terminal_lane and outcome in (DeliveryOutcome.EXHAUSTED, DeliveryOutcome.GONE):
            await subscription_ending(deps, claim)  # before the record: alerted at least once
        rec = await deps.store.deliveries.record_attempt(claim, attempt, outcome, delay_ms)
        # A failed lookup is an attempt like any other, but labelled apart (the last: exhausted).
        dns_retry = outcome is DeliveryOutcome.RETRY and result.error == "dns"
        deps.metrics.deliveries.labels("dns" if dns_retry else outcome.value).inc()
        deps.metrics.attempt_seconds.observe(result.duration_ms / 1000)
        if terminal_lane and outcome is DeliveryOutcome.DELIVERED and claim.series == 1:
            deps.metrics.lag_seconds.observe(max(0.0, (claim.now - claim.occurred_at) / 1000))
        attempt_log.info(
            "delivery_attempt",
            subscription_id=claim.subscription_id,
            webhook_id=msg_id,
            run_id=claim.doc.run_id,
            attempt=number,
            outcome=outcome.value,
            state=rec.state,
            stale=rec.stale,
            status_code=result.status_code,
            error=result.error,
            duration_ms=attempt.duration_ms,
            next_attempt_at=rec.next,
        )
    except Exception as exc:
        _log_error(claim, exc)
