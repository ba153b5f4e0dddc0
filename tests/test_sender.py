"""The delivery transport against a real receiver over loopback: every outcome and error class."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import pytest

from relay.webhooks.allowlist import CallbackPolicy
from relay.webhooks.sender import AttemptResult, WebhookSender, parse_retry_after
from relay.webhooks.signing import new_secret, webhook_headers
from tests.support.receiver import BIG_BODY, ReceiverHandle, verify

OPEN = CallbackPolicy(allow_private=True)
STRICT = CallbackPolicy()

TIMEOUT = 0.5
BODY = b'{"type":"run.completed","data":{"runId":"r-1"}}'
SECRET = new_secret()


def headers(msg_id: str = "msg_test") -> dict[str, str]:
    return webhook_headers(msg_id, int(time.time()), BODY, [SECRET])


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(timeout=TIMEOUT, policy=OPEN, max_connections=64) as s:
        yield s


async def test_2xx_is_delivered_with_the_exact_signed_body(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    result = await sender.send(receiver.url("/ok/sub-1"), BODY, headers("msg_ok"))
    assert result.outcome == "delivered"
    assert (result.status_code, result.error, result.retry_after) == (200, None, None)
    assert result.response_excerpt == '{"ok": true}'
    assert 0 < result.duration_ms < TIMEOUT * 1000
    [got] = receiver.requests
    assert (got.method, got.path, got.body) == ("POST", "/ok/sub-1", BODY)
    assert verify(got, SECRET)["data"]["runId"] == "r-1"
    assert got.headers["user-agent"].startswith("intuned-relay/")
    assert "cookie" not in got.headers


async def test_204_is_delivered(sender: WebhookSender, receiver: ReceiverHandle) -> None:
    result = await sender.send(receiver.url("/status/204"), BODY, headers())
    assert (result.outcome, result.status_code, result.response_excerpt) == ("delivered", 204, "")


async def test_410_is_gone(sender: WebhookSender, receiver: ReceiverHandle) -> None:
    result = await sender.send(receiver.url("/gone"), BODY, headers())
    assert (result.outcome, result.status_code, result.error) == ("gone", 410, "http_410")


@pytest.mark.parametrize("code", [400, 404, 408, 500, 502])
async def test_other_statuses_are_retried(
    sender: WebhookSender, receiver: ReceiverHandle, code: int
) -> None:
    result = await sender.send(receiver.url(f"/status/{code}"), BODY, headers())
    assert (result.outcome, result.status_code, result.error) == ("retry", code, f"http_{code}")
    assert result.response_excerpt == f"status {code}"
    assert result.retry_after is None


async def test_redirect_is_not_followed(sender: WebhookSender, receiver: ReceiverHandle) -> None:
    result = await sender.send(receiver.url("/redirect"), BODY, headers())
    assert (result.outcome, result.status_code, result.error) == ("retry", 302, "redirect")
    await asyncio.sleep(0.1)
    assert [r.path for r in receiver.requests] == ["/redirect"]


async def test_a_slow_receiver_is_cut_at_the_timeout(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    started = time.monotonic()
    result = await sender.send(receiver.url("/slow/5000"), BODY, headers())
    elapsed = time.monotonic() - started
    assert (result.outcome, result.status_code, result.error) == ("retry", None, "timeout")
    # Cut at the timeout, long before the receiver's answer at 5 s.
    assert TIMEOUT <= elapsed < 5.0
    assert TIMEOUT * 1000 <= result.duration_ms < 5000


async def test_slow_but_in_time_is_delivered(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    result = await sender.send(receiver.url("/slow/100"), BODY, headers())
    assert result.outcome == "delivered"
    assert result.duration_ms >= 100


async def test_a_connection_reset_is_retried(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    result = await sender.send(receiver.url("/reset"), BODY, headers())
    assert (result.outcome, result.status_code, result.error) == ("retry", None, "reset")
    assert len(receiver.requests) == 1


async def test_nothing_listening_is_a_connect_error(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    url = receiver.url("/ok")
    receiver.stop()
    result = await sender.send(url, BODY, headers())
    assert (result.outcome, result.error) == ("retry", "connect")


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_in_seconds(
    sender: WebhookSender, receiver: ReceiverHandle, code: int
) -> None:
    result = await sender.send(receiver.url(f"/status/{code}?retry_after=120"), BODY, headers())
    assert (result.outcome, result.error, result.retry_after) == ("retry", f"http_{code}", 120.0)


async def test_retry_after_as_http_date(sender: WebhookSender, receiver: ReceiverHandle) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    result = await sender.send(
        receiver.url(f"/status/503?retry_after={quote(when)}"), BODY, headers()
    )
    assert result.retry_after is not None
    assert 85 <= result.retry_after <= 90


async def test_retry_after_is_ignored_on_other_statuses(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    result = await sender.send(receiver.url("/status/500?retry_after=60"), BODY, headers())
    assert result.retry_after is None


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("0", now=now) == 0.0
    assert parse_retry_after(" 7 ", now=now) == 7.0
    assert parse_retry_after("Sun, 29 Nov 2026 10:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Sun, 29 Nov 2026 09:00:00 GMT", now=now) == 0.0  # in the past
    for junk in (None, "", "soon", "-5", "1.5e3", "٣"):
        assert parse_retry_after(junk, now=now) is None


async def test_excerpt_is_capped_at_1_kib(sender: WebhookSender, receiver: ReceiverHandle) -> None:
    result = await sender.send(receiver.url("/big"), BODY, headers())
    assert result.outcome == "delivered"
    assert result.response_excerpt == BIG_BODY[:1024].decode()


async def test_hanging_receivers_do_not_delay_the_others(receiver: ReceiverHandle) -> None:
    timeout = 1.0  # more headroom than TIMEOUT: 90 quick answers must all fit inside it

    async def one(sender: WebhookSender, i: int) -> tuple[AttemptResult, float]:
        path = f"/slow/10000/h{i}" if i % 10 == 0 else f"/ok/s{i}"
        started = time.monotonic()
        result = await sender.send(receiver.url(path), BODY, headers(f"msg_{i}"))
        return result, time.monotonic() - started

    started = time.monotonic()
    async with WebhookSender(timeout=timeout, policy=OPEN, max_connections=64) as sender:
        results = await asyncio.gather(*(one(sender, i) for i in range(100)))
    total = time.monotonic() - started
    hung = [r for i, (r, _) in enumerate(results) if i % 10 == 0]
    fine = [(r, took) for i, (r, took) in enumerate(results) if i % 10 != 0]
    assert len(hung) == 10
    assert all(r.error == "timeout" for r in hung)
    assert all(r.outcome == "delivered" for r, _ in fine)
    assert max(took for _, took in fine) < timeout  # done before the hung ones were cut
    assert total < 10.0  # nothing waited for the hung receivers' answers at 10 s


async def test_loopback_is_refused_without_allow_private(receiver: ReceiverHandle) -> None:
    async with WebhookSender(timeout=TIMEOUT, policy=STRICT) as guarded:
        for url in (
            receiver.url("/ok"),  # an IP literal: aiohttp would not ask a resolver
            f"http://localhost:{receiver.port}/ok",  # a name: the guarded resolver refuses
            f"http://[::ffff:127.0.0.1]:{receiver.port}/ok",
        ):
            result = await guarded.send(url, BODY, headers())
            assert (result.outcome, result.error, result.status_code) == (
                "retry",
                "ssrf_refused",
                None,
            ), url
        for url in (  # shorthand IPv4 forms: refused as at registration, whatever they mean
            f"http://2130706433:{receiver.port}/ok",
            f"http://0x7f.1:{receiver.port}/ok",
        ):
            result = await guarded.send(url, BODY, headers())
            assert (result.outcome, result.error) == ("retry", "invalid_url"), url
    await asyncio.sleep(0.05)
    assert receiver.requests == []


async def test_flaky_receiver_counts_per_webhook_id(
    sender: WebhookSender, receiver: ReceiverHandle
) -> None:
    url = receiver.url("/flaky/2/sub-1")
    outcomes = [(await sender.send(url, BODY, headers("msg_a"))).outcome for _ in range(3)]
    assert outcomes == ["retry", "retry", "delivered"]
    # A different webhook-id has its own count.
    assert (await sender.send(url, BODY, headers("msg_b"))).outcome == "retry"


async def test_send_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await WebhookSender(timeout=1, policy=OPEN).send("http://127.0.0.1:1/", b"", {})
