"""Standard Webhooks signing: secrets, the ``webhook-*`` headers and stable message ids.

A signature is ``v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`` keyed with the decoded part
of a ``whsec_`` secret (contract §4). During a secret rotation every webhook carries one signature
per secret, newest first, so a receiver holding either secret verifies it.

This module is pure computation: it must never do I/O, touch Redis, or log a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence
from functools import cache
from importlib import metadata

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
WEBHOOK_ID_PREFIX = "msg_"
_WEBHOOK_ID_NAMESPACE = b"intuned-relay/webhook-id/v1"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64-decoded part); ValueError if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a signing secret must start with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret must be whsec_ followed by base64") from None
    if not key:
        raise ValueError("a signing secret must not be empty")
    return key


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated, in order."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(secret_key(s), signed, "sha256")).decode("ascii")
        for s in secrets
    )


@cache
def default_user_agent() -> str:
    """``intuned-relay/<installed version>`` (``0`` when the package metadata is missing)."""
    try:
        version = metadata.version("intuned-relay")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"intuned-relay/{version}"


def webhook_headers(
    msg_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    user_agent: str | None = None,
) -> dict[str, str]:
    """Every header of one delivery attempt (contract §4); ``timestamp`` is this attempt's."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(msg_id, timestamp, body, secrets),
        "user-agent": user_agent or default_user_agent(),
    }


def webhook_id(subscription_id: str, event_type: str) -> str:
    """The stable ``webhook-id`` of one event of one subscription: same on retry and redelivery.

    ``msg_`` + the first 160 bits of SHA-256 over a namespace and the length-prefixed
    subscription id and event type, in lower-case base32 (32 characters, no padding). Length
    prefixes keep distinct pairs from colliding by concatenation.
    """
    sub, event = subscription_id.encode(), event_type.encode()
    digest = hashlib.sha256(
        b"%s\x00%d:%s%d:%s" % (_WEBHOOK_ID_NAMESPACE, len(sub), sub, len(event), event)
    ).digest()
    return WEBHOOK_ID_PREFIX + base64.b32encode(digest[:20]).decode("ascii").lower()
