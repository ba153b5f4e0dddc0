"""How a stored subscription is shown to clients: the API's bodies, operational webhooks and the
start-and-watch answer share these shapes, so services need not import the API.

Camel case on the wire, header values redacted. This module does no I/O and must never show a
header value or a signing secret.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import msgspec

from relay.model import Attempt, Subscription, SubState, utc_second
from relay.webhooks.custom_headers import redacted

EventName = Literal["completed", "failed", "canceled", "started"]


class AttemptOut(msgspec.Struct, rename="camel"):
    """One delivery attempt as shown to the client."""

    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float
    response: str
    series: int
    event_type: str | None  # run.started for that lane's attempts, else the subscription's


class SubscriptionItem(msgspec.Struct, rename="camel"):
    """A subscription in a list page: everything ``GET /v1/subscriptions/{id}`` shows except
    the attempt log (read one subscription for its ``attempts``)."""

    id: str
    project_name: str
    run_id: str
    workspace_id: str
    callback_url: str
    events: list[EventName]
    metadata: dict[str, Any]
    headers: dict[str, str]
    state: SubState
    event_type: str | None
    created_at: str
    updated_at: str
    run_status: str | None
    next_attempt_at: str | None


class SubscriptionOut(SubscriptionItem):
    """A subscription as returned by every route about one subscription: with its attempts."""

    attempts: list[AttemptOut]


# Seam "timestamps by the second" (bench/NOTES.md, session 26): each second's text formatted
# once (``utc_second``), integer arithmetic for the rest; it bought 3.4-3.9 % of the API's
# instructions per registration against ``datetime`` each time.
def iso(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with millisecond precision (exact: no float
    division, which read 9999-12-31T23:59:59.999 as .998)."""
    return f"{utc_second(ms // 1000)}.{ms % 1000:03d}Z"


def attempt_out(a: Attempt, event_type: str | None = None) -> AttemptOut:
    """Shape one logged attempt for the API."""
    return AttemptOut(
        attempt=a.attempt,
        at=iso(a.at),
        status_code=a.status_code,
        error=a.error,
        duration_ms=a.duration_ms,
        response=a.response,
        series=a.series,
        event_type=a.event_type or event_type,
    )


_META = msgspec.json.Decoder(dict[str, Any])


def _item_fields(sub: Subscription, run_status: str | None) -> dict[str, Any]:
    d = sub.doc
    return {
        "id": d.id,
        "project_name": d.project_name,
        "run_id": d.run_id,
        "workspace_id": d.workspace_id,
        "callback_url": d.callback_url,
        "events": [cast(EventName, e) for e in d.events],
        "metadata": _META.decode(d.metadata),
        "headers": redacted(d.headers),
        "state": sub.state,
        "event_type": sub.event_type,
        "created_at": iso(d.created_at),
        "updated_at": iso(sub.updated_at),
        "run_status": run_status,
        "next_attempt_at": iso(sub.next_attempt_at) if sub.next_attempt_at else None,
    }


def subscription_item(sub: Subscription, run_status: str | None) -> SubscriptionItem:
    """Shape a stored subscription for a list page (no attempt log)."""
    return SubscriptionItem(**_item_fields(sub, run_status))


def subscription_out(sub: Subscription, run_status: str | None) -> SubscriptionOut:
    """Shape a stored subscription, with its attempt log, for the API."""
    return SubscriptionOut(
        **_item_fields(sub, run_status),
        attempts=[attempt_out(a, sub.event_type) for a in sub.attempts],
    )
