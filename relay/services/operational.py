"""Operational webhooks (contract §6): one URL per client where the relay reports trouble.

A client configures ``{url, headers?}`` (checked like a registration). The relay then POSTs
signed events there, signed with the client's own secret like its run webhooks:

* ``subscription.exhausted`` / ``subscription.gone``: a subscription of the client ended so;
  ``data`` is the subscription exactly as ``GET /v1/subscriptions/{id}`` shows it.
* ``intuned.unauthorized``: Intuned refused the relay's API key while polling; sent once per
  incident (an incident ends with the next accepted poll).

Sending follows ``RELAY_RETRY_SCHEDULE`` (the worker's arq job retries, see
``workers.operational``). The webhook-id of a subscription event is stable per subscription,
event and attempt series, so a receiver dedupes retries but hears of a second exhaustion after a
redelivery.

This module must never know HTTP request objects, and never log a header value or secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import msgspec

from relay.model import Subscription, SubState
from relay.services.views import subscription_out
from relay.settings import Settings
from relay.store import ControlStore, OperationalHook, SecretStore
from relay.webhooks.callbacks import Lookup, check_callback
from relay.webhooks.custom_headers import validate_headers
from relay.webhooks.payload import build_control_body
from relay.webhooks.sender import AttemptResult, WebhookSender
from relay.webhooks.signing import new_secret, webhook_headers, webhook_id

EXHAUSTED: Final = "subscription.exhausted"
GONE: Final = "subscription.gone"
INTUNED_UNAUTHORIZED: Final = "intuned.unauthorized"
ENDING_EVENTS: Final = {SubState.EXHAUSTED: EXHAUSTED, SubState.GONE: GONE}
INCIDENT_INTUNED_KEY: Final = "intuned-unauthorized"
INCIDENT_TTL_S: Final = 24 * 3600  # an incident nobody closed is forgotten after a day


class OperationalEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event for one client's operational webhook: what the worker's job carries."""

    client: str
    msg_id: str
    body: bytes


async def configure(
    controls: ControlStore,
    secrets: SecretStore,
    settings: Settings,
    client: str,
    url: str,
    headers: Mapping[str, str] | None,
    lookup: Lookup | None,
) -> OperationalHook:
    """Check the URL and headers like a registration's, then store them (InvalidInput why).
    The client's signing secret is created now if it has none (workers only read secrets)."""
    extra = validate_headers(headers)
    await check_callback(url, policy=settings.callback_policy, lookup=lookup, field="url")
    hook = OperationalHook(url=url, headers=extra)
    await secrets.signing_secret(client, new_secret())
    await controls.set_operational_webhook(client, hook)
    return hook


def subscription_event(sub: Subscription, run_status: str | None) -> OperationalEvent | None:
    """The event telling ``sub``'s client that it ended exhausted or gone (None otherwise)."""
    event_type = ENDING_EVENTS.get(sub.state)
    if event_type is None:
        return None
    data = msgspec.to_builtins(subscription_out(sub, run_status))
    body = build_control_body(
        event_type=event_type,
        occurred_at=datetime.fromtimestamp(sub.updated_at / 1000, UTC),
        data=data,
    )
    return OperationalEvent(
        client=sub.doc.client,
        msg_id=webhook_id(sub.doc.id, f"{event_type}#{sub.series}"),
        body=body,
    )


def intuned_unauthorized_event(
    client: str, status_code: int | None, incident_started: datetime
) -> OperationalEvent:
    """The event telling ``client`` that Intuned refused the relay's API key."""
    data = {
        "statusCode": status_code,
        "message": "Intuned refused the relay's API key (INTUNED_API_KEY) while polling; "
        "watches end with run.watch_failed (intuned_unauthorized) until it is fixed",
    }
    started = int(incident_started.timestamp())
    return OperationalEvent(
        client=client,
        msg_id=webhook_id(f"incident:{started}:{client}", INTUNED_UNAUTHORIZED),
        body=build_control_body(
            event_type=INTUNED_UNAUTHORIZED, occurred_at=incident_started, data=data
        ),
    )


async def send_event(
    controls: ControlStore, secrets: SecretStore, sender: WebhookSender, event: OperationalEvent
) -> AttemptResult | None:
    """One attempt to the client's operational webhook (None: it has no webhook, or no
    secret to sign with, now)."""
    hook = await controls.operational_webhook(event.client)
    keys = await secrets.in_force(event.client) if hook is not None else []
    if hook is None or not keys:
        return None
    now = datetime.now(UTC)
    signed = webhook_headers(event.msg_id, int(now.timestamp()), event.body, keys)
    return await sender.send(hook.url, event.body, {**hook.headers, **signed})
