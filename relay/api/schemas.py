"""Request and response bodies of the HTTP API: msgspec Structs, camelCase on the wire.

Requests are strict (unknown fields, wrong types and out-of-range values are 400s); responses
mirror ``relay-contract.md`` §3 field for field. This module does no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast

import msgspec

from relay.model import Attempt, Subscription, SubState
from relay.webhooks.custom_headers import MAX_HEADERS, redacted

EventName = Literal["completed", "failed", "canceled"]

# A project name is Intuned's free string, sent percent-encoded as ONE path segment: no "/" or
# "\\", no C0/C1 control characters, not "." or "..".
PROJECT_NAME_PATTERN: Final = r"^(?!\.{1,2}$)[^/\\\x00-\x1f\x7f-\x9f]+$"
RUN_ID_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
# Only the scheme: the rest is judged by relay.webhooks.callbacks (which says what is wrong).
CALLBACK_URL_PATTERN: Final = r"^[Hh][Tt][Tt][Pp][Ss]?://"
ProjectName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=PROJECT_NAME_PATTERN,
        description="Intuned project name (one path segment: no '/', no control characters, "
        "not '.' or '..')",
    ),
]
RunId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=RUN_ID_PATTERN,
        description="Intuned run id (nanoid alphabet A-Z a-z 0-9 _ -)",
    ),
]
CallbackUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=CALLBACK_URL_PATTERN,
        description="http(s) URL receiving the webhook; no user info; must not resolve to a "
        "loopback, private or link-local address (unless RELAY_ALLOW_PRIVATE_CALLBACKS)",
    ),
]
METADATA_MAX_BYTES: Final = 4096
Headers = Annotated[
    dict[str, str],
    msgspec.Meta(
        description=f"Up to {MAX_HEADERS} extra headers (4 KiB in all) sent on every attempt, "
        "e.g. Authorization. Host, Content-*, Transfer-Encoding, Connection and other "
        "hop-by-hop headers, User-Agent and webhook-* are refused. Responses show the names "
        'with every value replaced by "***".'
    ),
]
# msgspec matches ``pattern`` with re.search, where "$" also matches before a final "\n":
# the whole value is checked again with fullmatch.
_PROJECT_NAME_RE: Final = re.compile(PROJECT_NAME_PATTERN)
_RUN_ID_RE: Final = re.compile(RUN_ID_PATTERN)
# Readable versions of the two patterns, used in error details instead of the raw regex.
PROJECT_NAME_RULE: Final = (
    "must be one path segment: no '/' or '\\', no control characters, not '.' or '..'"
)
RUN_ID_RULE: Final = "may use only letters, digits, '_' and '-'"
CALLBACK_URL_RULE: Final = "must be an http:// or https:// URL"
# What ``relay.model.new_subscription_id`` makes; anything else is not found without a lookup.
_SUBSCRIPTION_ID_RE: Final = re.compile(r"sub_[A-Za-z0-9_-]{1,64}")


def is_subscription_id(value: str) -> bool:
    """True when ``value`` has the shape of a subscription id (``sub_`` + url-safe token)."""
    return _SUBSCRIPTION_ID_RE.fullmatch(value) is not None


class SubscriptionCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /v1/subscriptions``."""

    project_name: ProjectName
    run_id: RunId
    callback_url: CallbackUrl
    events: (
        Annotated[
            list[EventName],
            msgspec.Meta(
                min_length=1,
                max_length=3,
                description="Statuses to be told about; default all three",
            ),
        ]
        | None
    ) = None
    metadata: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(description="Any JSON object up to 4 KiB, echoed in the webhook"),
        ]
        | None
    ) = None
    headers: Headers | None = None

    def __post_init__(self) -> None:
        if _PROJECT_NAME_RE.fullmatch(self.project_name) is None:
            raise ValueError(f"{PROJECT_NAME_RULE} - at `$.projectName`")
        if _RUN_ID_RE.fullmatch(self.run_id) is None:
            raise ValueError(f"{RUN_ID_RULE} - at `$.runId`")


class AttemptOut(msgspec.Struct, rename="camel"):
    """One delivery attempt as shown to the client."""

    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float
    response: str
    series: int


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


class SubscriptionPage(msgspec.Struct, rename="camel"):
    """One page of ``GET /v1/subscriptions`` (items without their attempt log)."""

    items: list[SubscriptionItem]
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


class ReadyOut(msgspec.Struct, rename="camel", omit_defaults=True):
    """``/readyz``: ready or not (Redis answers), and what the start-up checks found."""

    status: Literal["ok", "unavailable"]
    redis_persistence: Annotated[
        Literal["aof", "rdb", "none", "unknown"],
        msgspec.Meta(description="How Redis persists; unknown when CONFIG GET is refused"),
    ]
    redis_eviction_policy: Annotated[
        str, msgspec.Meta(description="Redis maxmemory-policy (the relay needs noeviction)")
    ]
    intuned_key: Annotated[
        Literal["ok", "refused", "unknown"],
        msgspec.Meta(description="Whether Intuned accepts INTUNED_API_KEY (probed at start)"),
    ]
    detail: str | None = None


class ErrorOut(msgspec.Struct):
    """Every error body: a readable ``detail``, the status code, and details of input errors."""

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
        series=a.series,
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
        **_item_fields(sub, run_status), attempts=[attempt_out(a) for a in sub.attempts]
    )
