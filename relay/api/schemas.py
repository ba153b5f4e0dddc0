"""Request and response bodies of the HTTP API: msgspec Structs, camelCase on the wire.

Requests are strict (unknown fields, wrong types and out-of-range values are 400s); responses
mirror ``relay-contract.md`` §3 field for field. This module does no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec

from relay.fields import PROJECT_NAME_PATTERN, RUN_ID_PATTERN, CallbackUrl, ProjectName, RunId
from relay.services.views import (
    AttemptOut,
    EventName,
    SubscriptionItem,
    SubscriptionOut,
    attempt_out,
    iso,
    subscription_item,
    subscription_out,
)
from relay.webhooks.custom_headers import MAX_HEADERS

__all__ = [
    "AttemptOut",
    "EventName",
    "SubscriptionItem",
    "SubscriptionOut",
    "attempt_out",
    "iso",
    "subscription_item",
    "subscription_out",
]


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
                max_length=4,
                description=(
                    "Statuses to be told about: completed, failed, canceled (default: all "
                    "three) and, opt-in, started"
                ),
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


class ErrorOut(msgspec.Struct, rename="camel"):
    """Every error body: a readable ``detail``, the status code, and details of input errors."""

    status_code: int
    detail: str
    extra: Any = None
