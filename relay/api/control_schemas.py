"""Bodies of the control routes (contract §6): test deliveries, bulk redeliver, the operational
webhook. msgspec Structs, camelCase on the wire, strict on input. This module does no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from relay.api.schemas import Headers
from relay.fields import CallbackUrl, RunId
from relay.services.test_delivery import TestOutcome

RedeliverableState = Literal["exhausted", "gone", "delivered"]
Rfc3339 = Annotated[
    datetime, msgspec.Meta(tz=True, description="RFC 3339 time with an offset, e.g. ...Z")
]
CallbackHost = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9.:\[\]_-]+$",
        description="Only subscriptions whose callback URL has this host (case-insensitive)",
    ),
]


class TestDeliveryIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /v1/test-deliveries``."""

    callback_url: CallbackUrl
    headers: Headers | None = None


class TestDeliveryOut(msgspec.Struct, rename="camel"):
    """What the one ``relay.ping`` attempt came to."""

    outcome: TestOutcome
    status_code: int | None
    duration_ms: float
    response_excerpt: str
    error: str | None


class BulkRedeliverIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /v1/subscriptions/redeliver``: which of the client's subscriptions.

    ``since``/``until`` bound the time the subscription reached its state (``updatedAt``).
    """

    state: RedeliverableState
    run_id: RunId | None = None
    callback_host: CallbackHost | None = None
    since: Rfc3339 | None = None
    until: Rfc3339 | None = None


class BulkRedeliverOut(msgspec.Struct):
    """How many subscriptions started a new attempt series."""

    count: int


class OperationalWebhookIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Body of ``PUT /v1/operational-webhook``."""

    url: CallbackUrl
    headers: Headers | None = None


class OperationalWebhookOut(msgspec.Struct, rename="camel"):
    """The client's operational webhook (header values shown as ``***``)."""

    url: str
    headers: dict[str, str]
