"""Signatures are checked with the `standardwebhooks` reference library, exactly as receivers do."""

from __future__ import annotations

import base64
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.webhooks.signing import (
    default_user_agent,
    new_secret,
    secret_key,
    signature_header,
    webhook_headers,
    webhook_id,
)

BODY = b'{"type":"run.completed","data":{"runId":"r-1","message":"caf\xc3\xa9"}}'


def test_new_secret_is_whsec_base64_of_32_random_bytes() -> None:
    one, two = new_secret(), new_secret()
    assert one.startswith("whsec_")
    assert one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"), validate=True)) == 32
    assert secret_key(one) == base64.b64decode(one[6:])


@pytest.mark.parametrize("bad", ["", "whsec_", "sk_abc", "whsec_not base64!"])
def test_malformed_secret_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_key(bad)


def test_headers_verify_with_standardwebhooks() -> None:
    secret = new_secret()
    headers = webhook_headers("msg_1", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, headers)["data"]["message"] == "café"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "msg_1"
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
    assert re.fullmatch(r"intuned-relay/\S+", headers["user-agent"])
    assert headers["user-agent"] == default_user_agent()


def test_rotation_carries_both_signatures_and_each_secret_verifies() -> None:
    new, old, other = new_secret(), new_secret(), new_secret()
    ts = int(time.time())
    headers = webhook_headers("msg_rot", ts, BODY, [new, old], user_agent="ua/1")
    sigs = headers["webhook-signature"].split(" ")
    assert sigs == [
        signature_header("msg_rot", ts, BODY, [new]),
        signature_header("msg_rot", ts, BODY, [old]),
    ]
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(BODY, headers)
    assert headers["user-agent"] == "ua/1"


def test_tampered_body_wrong_secret_and_old_timestamp_fail() -> None:
    secret = new_secret()
    now = int(time.time())
    headers = webhook_headers("msg_t", now, BODY, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"r-1", b"r-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_other"})
    stale = webhook_headers("msg_t", now - 3600, BODY, [secret])
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale)


def test_signature_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        signature_header("msg_1", 1, BODY, [])


@settings(max_examples=60, deadline=None)
@given(
    body=st.text().map(str.encode),
    msg_id=st.from_regex(r"msg_[a-z0-9]{1,40}", fullmatch=True),
    skew=st.integers(min_value=-240, max_value=240),
)
def test_any_body_round_trips(body: bytes, msg_id: str, skew: int) -> None:
    secret = new_secret()
    headers = webhook_headers(msg_id, int(time.time()) + skew, body, [new_secret(), secret])
    assert Webhook(secret).verify(body, headers, json_parse=False) is None
    if body:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body + b" ", headers, json_parse=False)


def test_webhook_id_is_stable_distinct_and_well_formed() -> None:
    first = webhook_id("sub_1", "run.completed")
    assert first == webhook_id("sub_1", "run.completed")
    assert re.fullmatch(r"msg_[a-z2-7]{32}", first)
    others = {
        webhook_id("sub_2", "run.completed"),
        webhook_id("sub_1", "run.failed"),
        # Concatenation must not collide: "sub_1r" + "un.completed" vs "sub_1" + "run.completed".
        webhook_id("sub_1r", "un.completed"),
    }
    assert first not in others
    assert len(others) == 3
