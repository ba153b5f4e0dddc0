"""The worker's side of operational webhooks: notice trouble, enqueue events, send with retries.

An event is an arq job (``deliver_operational``) carrying its signed-later body; a failed attempt
raises arq's ``Retry`` with the next ``RELAY_RETRY_SCHEDULE`` delay, so retries survive a worker
restart like any queued job. The job id is the event's webhook-id, so the same event enqueued
twice is sent once.

A subscription's alert is queued at least once: BEFORE the final attempt is recorded, a
``confirm_operational`` job is queued (id per subscription and series). It looks at the stored
subscription: still delivering (the record is not in yet, or the worker died first and the
attempt will be made again) → it looks again after a lease; exhausted or gone in that series →
the event is queued; anything else (delivered after all, canceled, a newer series) → nothing.

Nothing here is on the critical path of a run's webhook: a failure to alert is logged, never
raised into the delivery or the poll that noticed it.

This module must never log a header value or secret, and holds no policy of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import structlog
from arq.worker import Retry

from relay.model import SubState, run_key
from relay.policy import retry_delay
from relay.services.operational import (
    INCIDENT_INTUNED_KEY,
    INCIDENT_TTL_S,
    OperationalEvent,
    intuned_unauthorized_event,
    send_event,
    subscription_event,
)
from relay.store import ClaimedDelivery
from workers.deps import WorkerDeps

log = structlog.get_logger("relay.operational")

JOB: Final = "deliver_operational"
CONFIRM: Final = "confirm_operational"
CONFIRM_DELAY_S: Final = 0.2  # the record of the final attempt is usually in by then
CONFIRM_TRIES: Final = 10


async def deliver_operational(ctx: dict[str, Any], client: str, msg_id: str, body: bytes) -> str:
    """arq job: one attempt to a client's operational webhook; ``Retry`` on the schedule."""
    deps: WorkerDeps = ctx["deps"]
    event = OperationalEvent(client=client, msg_id=msg_id, body=body)
    stores = deps.store
    result = await send_event(stores.controls, stores.secrets, deps.sender, event)
    if result is None:
        log.info("operational_dropped", client=client, webhook_id=msg_id, reason="no webhook")
        return "no_webhook"
    tried: int = ctx.get("job_try", 1)
    log.info(
        "operational_attempt",
        client=client,
        webhook_id=msg_id,
        attempt=tried,
        outcome=result.outcome,
        status_code=result.status_code,
        error=result.error,
    )
    if result.outcome != "retry":
        return result.outcome
    delay = retry_delay(tried, deps.settings.retry_schedule, retry_after=result.retry_after)
    if delay is None:
        log.warning("operational_exhausted", client=client, webhook_id=msg_id)
        return "exhausted"
    raise Retry(defer=delay)


def max_tries(schedule: tuple[float, ...]) -> int:
    """arq's max_tries for the job: the first attempt plus one per scheduled retry."""
    return len(schedule) + 1


async def enqueue(deps: WorkerDeps, event: OperationalEvent) -> None:
    """Queue one event (kept long enough for the whole retry schedule)."""
    if deps.arq is None:
        return
    keep = sum(deps.settings.retry_schedule) * 1.5 + 3600
    await deps.arq.enqueue_job(
        JOB, event.client, event.msg_id, event.body, _job_id=f"op:{event.msg_id}", _expires=keep
    )


async def subscription_ending(deps: WorkerDeps, claim: ClaimedDelivery) -> None:
    """Before a final attempt (exhausted or gone) is recorded: queue the check that alerts the
    client's operational webhook once the subscription shows it (see the module docstring)."""
    if deps.arq is None:
        return
    sid = claim.subscription_id
    try:
        if await deps.store.controls.operational_webhook(claim.doc.client) is None:
            return
        await deps.arq.enqueue_job(
            CONFIRM,
            sid,
            claim.series,
            _job_id=f"opc:{sid}:{claim.series}",
            _defer_by=CONFIRM_DELAY_S,
        )
    except Exception as exc:  # an alert must never break the delivery that noticed it
        log.warning("operational_enqueue_failed", subscription_id=sid, error=repr(exc))


async def confirm_operational(ctx: dict[str, Any], subscription_id: str, series: int) -> str:
    """arq job: queue the subscription's exhausted/gone event once its state shows it."""
    deps: WorkerDeps = ctx["deps"]
    subs = deps.store.subscriptions
    sub = await subs.get_subscription_any(subscription_id)
    if sub is None or sub.series != series:
        return "superseded"
    if sub.state is SubState.DELIVERING:  # the final attempt is not recorded (yet)
        if ctx.get("job_try", 1) >= CONFIRM_TRIES:
            return "gave_up"
        raise Retry(defer=deps.settings.delivery_timeout * 2 + 5)
    d = sub.doc
    [status] = await subs.run_statuses([run_key(d.project_name, d.run_id)])
    event = subscription_event(sub, status)
    if event is None:  # delivered after all, or canceled
        return "not_ended"
    await enqueue(deps, event)
    return "queued"


async def intuned_refused(deps: WorkerDeps, status_code: int | None) -> None:
    """Intuned refused the key: open the incident; its opener alerts every client once."""
    deps.intuned_incident = True
    try:
        controls = deps.store.controls
        if not await controls.open_incident(INCIDENT_INTUNED_KEY, INCIDENT_TTL_S):
            return
        log.error("intuned_key_refused", status_code=status_code)
        started = datetime.now(UTC)
        for client in sorted(set(deps.settings.api_keys.values())):
            if await controls.operational_webhook(client) is not None:
                await enqueue(deps, intuned_unauthorized_event(client, status_code, started))
    except Exception as exc:
        log.warning("operational_enqueue_failed", event="intuned.unauthorized", error=repr(exc))


async def intuned_accepted(deps: WorkerDeps) -> None:
    """A poll was accepted: an incident this process saw is over."""
    if not deps.intuned_incident:
        return
    deps.intuned_incident = False
    try:
        await deps.store.controls.close_incident(INCIDENT_INTUNED_KEY)
    except Exception as exc:
        deps.intuned_incident = True  # try again with the next accepted poll
        log.warning("incident_close_failed", error=repr(exc))
