"""Request and response bodies of the HTTP API: msgspec Structs, camelCase on the wire.

Requests are strict (unknown fields, wrong types and out-of-range values are 400s); responses
mirror ``relay-contract.md`` §3 field for field. This module does no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from relay.model import Attempt, Subscription

EventName = Literal["completed", "failed", "canceled"]

# A project name is Intuned's free string, sent percent-encoded as ONE path segment: no "/",
# no control characters, not "." or "..".
ProjectName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=r"^(?!\.{1,2}$)[^/\\\x00-\x1f\x7f]+$",
        description="Intuned project name (one path segment: no '/', no control characters)",
    ),
]
RunId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Intuned run id (nanoid alphabet A-Z a-z 0-9 _ -)",
    ),
]
CallbackUrl = Annotated[
    str,
    msgspec.Meta(min_length=8, max_length=2048, description="http(s) URL receiving the webhook"),
]
METADATA_MAX_BYTES = 4096


class SubscriptionCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /v1/subscriptions``."""

    project_name: ProjectName
    run_id: RunId
    callback_url: CallbackUrl
    events: Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=3)] | None = None
    metadata: dict[str, Any] | None = None


class AttemptOut(msgspec.Struct, rename="camel"):
    """One delivery attempt as shown to the client."""

    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float
    response: str


class SubscriptionOut(msgspec.Struct, rename="camel"):
    """A subscription as returned by every subscription route."""

    id: str
    project_name: str
    run_id: str
    workspace_id: str
    callback_url: str
    events: list[str]
    metadata: dict[str, Any]
    state: str
    created_at: str
    updated_at: str
    run_status: str | None
    attempts: list[AttemptOut]
    next_attempt_at: str | None


class SubscriptionPage(msgspec.Struct, rename="camel"):
    """One page of ``GET /v1/subscriptions``."""

    items: list[SubscriptionOut]
    next_cursor: str | None


class RunView(msgspec.Struct, rename="camel", omit_defaults=True):
    """``GET /v1/runs/...``: Intuned's last result as sent (absent fields omitted)."""

    run_id: str
    status: str
    fetched_at: str
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET
    reason: Any = msgspec.UNSET
    message: Any = msgspec.UNSET
    extended_payloads: Any = msgspec.UNSET


class SecretOut(msgspec.Struct):
    """The client's signing secret."""

    secret: str


class ErrorOut(msgspec.Struct):
    """Every error body: a readable ``detail`` (plus the status code)."""

    status_code: int
    detail: str
    extra: Any = None


def iso(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with millisecond precision."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def attempt_out(a: Attempt) -> AttemptOut:
    """Shape one logged attempt for the API."""
    return AttemptOut(
        attempt=a.attempt,
        at=iso(a.at),
        status_code=a.status_code,
        error=a.error,
        duration_ms=a.duration_ms,
        response=a.response,
    )


_META = msgspec.json.Decoder(dict[str, Any])


def subscription_out(sub: Subscription, run_status: str | None) -> SubscriptionOut:
    """Shape a stored subscription for the API."""
    d = sub.doc
    return SubscriptionOut(
        id=d.id,
        project_name=d.project_name,
        run_id=d.run_id,
        workspace_id=d.workspace_id,
        callback_url=d.callback_url,
        events=list(d.events),
        metadata=_META.decode(d.metadata),
        state=sub.state.value,
        created_at=iso(d.created_at),
        updated_at=iso(sub.updated_at),
        run_status=run_status,
        attempts=[attempt_out(a) for a in sub.attempts],
        next_attempt_at=iso(sub.next_attempt_at) if sub.next_attempt_at else None,
    )
