"""Registering a subscription: ``POST /v1/subscriptions`` and the registration of start-and-watch.

Checks the input (metadata ≤ 4 KiB, headers by ``relay.webhooks.custom_headers``, the callback
URL by the SSRF guard), then one store call registers it atomically. The store answers what
happened; this module turns refusals into the relay's errors:

* the same projectName+runId+callbackUrl with other metadata or other headers →
  ``SubscriptionExists`` (409, naming the existing id); the same values again → the existing one;
* RELAY_RUN_SHARING=owner and a run another client registered first → ``NotFound`` (404);
* a quota reached → ``QuotaExceeded`` (429 naming the limit).
Every refusal writes nothing.

This module must never know HTTP request objects, or log header values or metadata.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from relay.errors import InvalidInput, NotFound, QuotaExceeded, SubscriptionExists
from relay.fields import METADATA_MAX_BYTES
from relay.model import (
    RegisterAction,
    Subscription,
    SubscriptionDoc,
    fresh_subscription,
    new_subscription_id,
    now_ms,
    run_key,
    wanted_events,
)
from relay.settings import Settings
from relay.store import Stores
from relay.store.docs import registration_fingerprint
from relay.webhooks.callbacks import Lookup, check_callback
from relay.webhooks.custom_headers import validate_headers
from relay.webhooks.signing import new_secret

log = structlog.get_logger("relay.registration")


class NewSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """What a client asks to register (already decoded and shape-checked)."""

    project_name: str
    run_id: str
    callback_url: str
    events: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


class Registered(msgspec.Struct, frozen=True, kw_only=True):
    """The subscription as it now is, its run's last seen status, and whether it is new."""

    subscription: Subscription
    run_status: str | None
    created: bool


def _metadata(new: NewSubscription) -> bytes:
    metadata = msgspec.json.encode(new.metadata if new.metadata is not None else {})
    if len(metadata) > METADATA_MAX_BYTES:
        raise InvalidInput(f"metadata is {len(metadata)} bytes as JSON; the limit is 4096 (4 KiB)")
    return metadata


def _refused(action: RegisterAction, new: NewSubscription, existing: str, s: Settings) -> None:
    """Raise the error of a registration the store refused (nothing was written)."""
    if action is RegisterAction.CONFLICT:
        raise SubscriptionExists(existing)
    if action is RegisterAction.NOT_OWNER:
        raise NotFound(f"no run {new.project_name}/{new.run_id} that this client may subscribe to")
    if action is RegisterAction.QUOTA_CLIENT:
        raise QuotaExceeded(
            "RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT",
            s.max_subscriptions_per_client,
            "this client has that many active subscriptions; wait for some to finish or cancel "
            "some",
        )
    if action is RegisterAction.QUOTA_RUN:
        raise QuotaExceeded(
            "RELAY_MAX_SUBSCRIPTIONS_PER_RUN",
            s.max_subscriptions_per_run,
            "this run has that many subscriptions",
        )


async def register(
    stores: Stores, settings: Settings, client: str, new: NewSubscription, lookup: Lookup | None
) -> Registered:
    """Register ``new`` for ``client`` (idempotent); raise InvalidInput, SubscriptionExists,
    NotFound or QuotaExceeded when refused."""
    metadata = _metadata(new)
    headers = validate_headers(new.headers)
    events = wanted_events(new.events)
    await check_callback(new.callback_url, policy=settings.callback_policy, lookup=lookup)
    ws = settings.intuned_workspace_id
    doc = SubscriptionDoc(
        id=new_subscription_id(),
        client=client,
        workspace_id=ws,
        project_name=new.project_name,
        run_id=new.run_id,
        callback_url=new.callback_url,
        events=events,
        metadata=msgspec.Raw(metadata),
        created_at=now_ms(),
        headers=headers,
    )
    subs = stores.subscriptions
    rk = run_key(new.project_name, new.run_id)
    reg = await subs.register(
        doc,
        rk,
        new_secret(),
        fingerprint=registration_fingerprint(metadata, headers),
        owner_only=settings.run_sharing == "owner",
    )
    _refused(reg.action, new, reg.id, settings)
    if reg.created:
        log.info(
            "subscription_created",
            client=client,
            subscription_id=reg.id,
            run_id=new.run_id,
            action=reg.action,
        )
    if reg.action in (RegisterAction.POLL, RegisterAction.JOIN):
        # The subscription is the document just written, watching, with no attempts yet.
        sub = fresh_subscription(doc, reg.status)
        return Registered(subscription=sub, run_status=reg.status, created=True)
    # The idempotent repeat answers with the existing subscription; deliver/skip moved on.
    found = await subs.get_subscription(reg.id, client)
    if found is None:  # expired between the two calls: as if never registered
        raise NotFound(f"no subscription {reg.id}")
    [status] = await subs.run_statuses([rk])
    return Registered(subscription=found, run_status=status, created=reg.created)


async def may_read_run(stores: Stores, settings: Settings, client: str, rk: str) -> bool:
    """Whether ``client`` may read the run's cached result (``GET /v1/runs/...``): it has
    subscribed to it, and under RELAY_RUN_SHARING=owner the run is also its own."""
    subs = stores.subscriptions
    if settings.run_sharing == "owner":
        owner = await subs.run_owner(rk)
        if owner is not None and owner != client:
            return False
    return await subs.client_has_run(client, rk)
