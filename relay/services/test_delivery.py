"""Test delivery (contract §6): one signed ``relay.ping`` POSTed to a URL now, its outcome told.

The URL and headers are checked exactly as a registration's (a refused URL is a 400), the
client's quota is taken in Redis (``RELAY_TEST_DELIVERIES_PER_MINUTE``; beyond it a 429 naming
the limit), and the ping is signed with the client's current secrets like every webhook. The
attempt goes through the same ``WebhookSender`` as deliveries, so the SSRF guard is applied again
at connect time: an address refused then is the outcome ``refused`` (nothing connected).

This module must never know HTTP request objects or log a header value.
"""

from __future__ import annotations

import math
import secrets as _random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec
import structlog

from relay.errors import QuotaExceeded
from relay.model import DeliveryOutcome
from relay.settings import Settings
from relay.store import ControlStore, SecretStore
from relay.webhooks.callbacks import Lookup, check_callback
from relay.webhooks.custom_headers import validate_headers
from relay.webhooks.payload import build_control_body
from relay.webhooks.sender import AttemptResult, WebhookSender
from relay.webhooks.signing import WEBHOOK_ID_PREFIX, new_secret, webhook_headers

log = structlog.get_logger("relay.test_delivery")

PING: Final = "relay.ping"
QUOTA_WINDOW_S: Final = 60
# Error classes of an attempt the relay refused to make (nothing was sent).
_REFUSED: Final = frozenset({"ssrf_refused", "invalid_url"})

TestOutcome = Literal["delivered", "failed", "refused"]


class TestResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the ping came to."""

    outcome: TestOutcome
    status_code: int | None
    duration_ms: float
    response_excerpt: str
    error: str | None


def ping_body(client: str, now: datetime) -> bytes:
    """The ``relay.ping`` event body."""
    data = {"client": client, "message": "test delivery from intuned-relay"}
    return build_control_body(event_type=PING, occurred_at=now, data=data)


def result_of(attempt: AttemptResult) -> TestResult:
    """Classify one attempt for the client: delivered, failed, or refused (nothing sent)."""
    outcome: TestOutcome = "delivered" if attempt.outcome == DeliveryOutcome.DELIVERED else "failed"
    if attempt.error in _REFUSED:
        outcome = "refused"
    return TestResult(
        outcome=outcome,
        status_code=attempt.status_code,
        duration_ms=round(attempt.duration_ms, 2),
        response_excerpt=attempt.response_excerpt,
        error=attempt.error,
    )


async def send_test(
    *,
    controls: ControlStore,
    secrets: SecretStore,
    sender: WebhookSender,
    settings: Settings,
    client: str,
    url: str,
    headers: Mapping[str, str] | None,
    lookup: Lookup | None,
) -> TestResult:
    """Check, take the quota, sign and send one ping; raise InvalidInput / QuotaExceeded."""
    extra = validate_headers(headers)
    await check_callback(url, policy=settings.callback_policy, lookup=lookup)
    limit = settings.test_deliveries_per_minute
    use = await controls.take_quota("test-delivery", client, QUOTA_WINDOW_S)
    if use.count > limit:
        raise QuotaExceeded(
            "RELAY_TEST_DELIVERIES_PER_MINUTE",
            limit,
            "test deliveries a minute per client; try again after Retry-After seconds",
            retry_after=max(1, math.ceil(use.ttl / 1000)),
        )
    now = datetime.now(UTC)
    body = ping_body(client, now)
    keys = await secrets.in_force(client) or [await secrets.signing_secret(client, new_secret())]
    msg_id = WEBHOOK_ID_PREFIX + "ping_" + _random.token_hex(12)
    signed = webhook_headers(msg_id, int(now.timestamp()), body, keys)
    attempt = await sender.send(url, body, {**extra, **signed})
    result = result_of(attempt)
    log.info(
        "test_delivery",
        client=client,
        webhook_id=msg_id,
        outcome=result.outcome,
        status_code=result.status_code,
        error=result.error,
    )
    return result
