"""Delivery: one claimed subscription → one signed POST → one recorded attempt.

The event body is built once (first attempt) and stored; every retry and redelivery sends those
same bytes under the same ``webhook-id``, with a fresh ``webhook-timestamp`` and signature.
The first attempt stores the body while its POST is on the way (not before it): the bytes are a
pure function of what the claim read, all of it fixed once the run ended, so a retry that had to
rebuild them would get the same bytes, and the store's first writer wins anyway. The store
finishes before the attempt is recorded (which sets the body's expiry).

Before anything else the attempt asks the worker's ``HostGate`` (``relay.webhooks.hostgate``):
an attempt whose host is at its in-flight cap or behind an open breaker is put back into the due
set for later (``defer_deliveries``), taking no pool slot while it waits and no attempt from the
subscription's retry budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

import structlog

from relay.intuned.models import RAW_FIELDS_DECODER
from relay.model import Attempt, now_ms
from relay.policy import retry_delay
from relay.store import ClaimedDelivery
from relay.webhooks.hostgate import ADMITTED, Verdict, attempt_verdict, host_key
from relay.webhooks.payload import build_event_body
from relay.webhooks.sender import AttemptResult
from relay.webhooks.signing import new_secret, webhook_headers, webhook_id
from workers.deps import WorkerDeps

log = structlog.get_logger("relay.delivery")


async def event_body(
    deps: WorkerDeps, claim: ClaimedDelivery
) -> tuple[bytes, Awaitable[bytes] | None]:
    """This subscription's event body; on first use also the pending store of it."""
    store = deps.store
    if claim.body is not None:  # built by an earlier attempt (read by the claim)
        return claim.body, None
    raw = claim.result
    if not claim.result_known:  # too big to ride along with the claim
        cached = await store.cached_result(claim.run_key)
        raw = cached.body if cached is not None else None
    fields = RAW_FIELDS_DECODER.decode(raw) if raw is not None else None
    failure = None
    if claim.event_type == "run.watch_failed":
        wf = claim.failure
        failure = (wf.code.value, wf.message) if wf else ("watch_timeout", "watch ended")
    doc = claim.doc
    built = build_event_body(
        event_type=claim.event_type,
        occurred_at=datetime.fromtimestamp(claim.occurred_at / 1000, UTC),
        subscription_id=doc.id,
        workspace_id=doc.workspace_id,
        project_name=doc.project_name,
        run_id=doc.run_id,
        intuned_fields=fields,
        metadata=doc.metadata,
        failure=failure,
    )
    return built, asyncio.ensure_future(store.store_event_body(claim.subscription_id, built))


async def deliver_claimed(deps: WorkerDeps, claim: ClaimedDelivery) -> None:
    """Deliver a leased subscription unless its host's gate parks or defers it.

    An admitted attempt may be followed, in the same task and pool slot, by parked attempts to
    the same host that the gate hands over when it ends.
    """
    gate = deps.gate
    host = host_key(claim.doc.callback_url)
    admission = gate.admit(host, claim)
    if admission.parked:
        return
    if not admission.admitted:
        await _defer(deps, [claim], admission.retry_in, admission.reason)
        return
    current: ClaimedDelivery | None = claim
    while current is not None:
        verdict: Verdict = "neutral"
        duration = 0.0
        try:
            result = await _attempt(deps, current)
            verdict = attempt_verdict(result.status_code, result.error)
            duration = result.duration_ms / 1000
        except Exception as exc:  # the lease brings it back; the parked ones must go on
            log.error(
                "delivery_error",
                subscription_id=current.subscription_id,
                error=repr(exc),
                exc_info=True,
            )
        current = gate.done(host, admission, verdict, duration)
        admission = ADMITTED
        evicted = gate.evict(host)
        if evicted:
            await _defer(deps, evicted, gate.cooldown, "breaker_open")


async def _defer(
    deps: WorkerDeps, claims: list[ClaimedDelivery], seconds: float, reason: str | None
) -> None:
    """Put leased deliveries back into the due set for later; no attempt is counted."""
    until = now_ms() + int(seconds * 1000)
    await deps.store.defer_deliveries([c.subscription_id for c in claims], until)
    deps.metrics.deferrals.labels(reason or "host_busy").inc(len(claims))


async def _attempt(deps: WorkerDeps, claim: ClaimedDelivery) -> AttemptResult:
    """Make one delivery attempt for a leased subscription and record it."""
    store, s = deps.store, deps.settings
    body, storing = await event_body(deps, claim)
    now = now_ms()
    secrets = list(claim.secrets)
    if not secrets:
        secrets = [await store.signing_secret(claim.doc.client, new_secret())]
    msg_id = webhook_id(claim.subscription_id, claim.event_type)
    headers = webhook_headers(msg_id, now // 1000, body, secrets)
    result = await deps.sender.send(claim.doc.callback_url, body, headers)
    if storing is not None:
        await storing
    done = now_ms()
    number = claim.attempts_in_series + 1
    outcome: str = result.outcome
    next_due = 0
    if outcome == "retry":
        delay = retry_delay(number, s.retry_schedule, retry_after=result.retry_after)
        if delay is None:
            outcome = "exhausted"
        else:
            next_due = done + int(delay * 1000)
    attempt = Attempt(
        attempt=number,
        at=now,
        status_code=result.status_code,
        error=result.error,
        duration_ms=round(result.duration_ms, 2),
        response=result.response_excerpt,
        series=claim.series,
    )
    state = await store.record_attempt(claim, attempt, outcome, next_due, done)
    # A failed lookup is an attempt like any other, but labelled apart (the last one: exhausted).
    dns_retry = outcome == "retry" and result.error == "dns"
    deps.metrics.deliveries.labels("dns" if dns_retry else outcome).inc()
    deps.metrics.attempt_seconds.observe(result.duration_ms / 1000)
    if outcome == "delivered" and claim.series == 1:
        deps.metrics.lag_seconds.observe(max(0.0, (done - claim.occurred_at) / 1000))
    log.info(
        "delivery_attempt",
        subscription_id=claim.subscription_id,
        webhook_id=msg_id,
        run_id=claim.doc.run_id,
        attempt=number,
        outcome=outcome,
        state=state,
        status_code=result.status_code,
        error=result.error,
        duration_ms=attempt.duration_ms,
        next_attempt_at=next_due or None,
    )
    return result
