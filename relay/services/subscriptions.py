"""A client's subscriptions: filtered listing, one in detail, redeliver, delete.

Every call is bounded whatever the client holds: a listing by run reads the run's own index
(bounded by RELAY_MAX_SUBSCRIPTIONS_PER_RUN); a listing by callback host alone examines at most
``SCAN_LIMIT`` subscriptions (newest first, from the store's cursor) and returns a cursor to go
on from (bulk redeliver is ``relay.services.redelivery``). This module must never name a
Redis key or act on another client's subscription (the store's calls take the client and
answer "not found" for anyone else's).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import msgspec

from relay.errors import Conflict, InvalidInput, NotFound
from relay.model import ChangeOutcome, Subscription, SubState, run_key
from relay.services.events import event_body
from relay.store import SubscriptionStore, encode_cursor

SCAN_PAGE: Final = 100
SCAN_LIMIT: Final = 100


class Filters(msgspec.Struct, frozen=True):
    """What a listing keeps: a state, a run id and a callback host (each optional)."""

    state: SubState | None = None
    run_id: str | None = None
    host: str | None = None

    def keeps(self, sub: Subscription) -> bool:
        """True when ``sub`` passes the host filter (state and run are the store's indexes)."""
        return self.host is None or callback_host(sub.doc.callback_url) == self.host.lower()


class Listing(msgspec.Struct, frozen=True):
    """One page of a listing; ``scanned`` says how many subscriptions were examined for it."""

    items: list[Subscription]
    next_cursor: str | None
    scanned: int


class Detail(msgspec.Struct, frozen=True):
    """One subscription, its run's last seen Intuned status and its event body (None before
    its run ended)."""

    subscription: Subscription
    run_status: str | None
    event_body: bytes | None


def callback_host(url: str) -> str:
    """The lower-cased host name of a callback URL ('' when it has none)."""
    return (urlsplit(url).hostname or "").lower()


def _cursor_of(sub: Subscription) -> str:
    return encode_cursor(sub.doc.created_at, sub.doc.id)


async def _page(
    store: SubscriptionStore,
    client: str,
    filters: Filters,
    limit: int,
    cursor: str | None,
) -> list[Subscription]:
    try:
        page = await store.list_subscriptions(
            client, state=filters.state, limit=limit, cursor=cursor, run_id=filters.run_id
        )
    except ValueError as exc:
        raise InvalidInput(f"cursor: {exc}; follow the page links") from None
    return page.items


async def list_subscriptions(
    store: SubscriptionStore, client: str, filters: Filters, *, limit: int, cursor: str | None
) -> Listing:
    """The client's subscriptions newest first that pass ``filters``, ``limit`` at most."""
    if filters.host is None:
        items = await _page(store, client, filters, limit + 1, cursor)
        more = len(items) > limit
        items = items[:limit]
        return Listing(
            items=items, next_cursor=_cursor_of(items[-1]) if more else None, scanned=len(items)
        )
    found: list[Subscription] = []
    scanned = 0
    while scanned < SCAN_LIMIT:
        batch = await _page(store, client, filters, SCAN_PAGE, cursor)
        for sub in batch:
            scanned += 1
            cursor = _cursor_of(sub)
            if filters.keeps(sub):
                found.append(sub)
                if len(found) == limit:
                    return Listing(items=found, next_cursor=cursor, scanned=scanned)
        if len(batch) < SCAN_PAGE:
            return Listing(items=found, next_cursor=None, scanned=scanned)
    return Listing(items=found, next_cursor=cursor, scanned=scanned)


async def subscription_detail(store: SubscriptionStore, client: str, sid: str) -> Detail:
    """One of the client's subscriptions with its run status and event body; NotFound else."""
    sub = await store.get_subscription(sid, client)
    if sub is None:
        raise NotFound(f"no subscription {sid}")
    rk = run_key(sub.doc.project_name, sub.doc.run_id)
    [status] = await store.run_statuses([rk])
    source = await store.event_source(sid, client)
    body = None
    if source is not None:
        body = event_body(
            sub.doc, source.event_type, source.occurred_at, source.failure, source.result
        )
    return Detail(subscription=sub, run_status=status, event_body=body)


async def redeliver(store: SubscriptionStore, client: str, sid: str) -> None:
    """Start a fresh attempt series (same webhook-id); NotFound, or Conflict naming the state."""
    res = await store.redeliver(sid, client)
    if res.outcome is ChangeOutcome.NOT_FOUND:
        raise NotFound(f"no subscription {sid}")
    if res.outcome is ChangeOutcome.CONFLICT:
        raise Conflict(
            f"subscription is {res.state}: only a terminal run's event can be redelivered"
        )


async def delete(store: SubscriptionStore, client: str, sid: str) -> None:
    """Cancel a subscription: no further deliveries. NotFound for an unknown id."""
    if not await store.cancel(sid, client):
        raise NotFound(f"no subscription {sid}")
