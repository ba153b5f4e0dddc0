"""Test deliveries, bulk redeliver and operational webhooks, end to end over sockets: the API
in-process, its worker in the same loop, a loopback receiver; every webhook verified by
``standardwebhooks``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.webhooks.callbacks import IPAddress
from tests.support.api_helpers import api_env, everything, make_app
from tests.support.e2e import E2E
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    AUTH_BETA,
    signing_secret_of,
    wait_until,
)

SUBS = "/v1/subscriptions"
TESTS = "/v1/test-deliveries"
OPS = "/v1/operational-webhook"


# ---- POST /v1/test-deliveries ----------------------------------------------------------------


async def test_a_test_delivery_is_signed_carries_headers_and_reports_delivered(
    api: AsyncTestClient[Any], receiver: ReceiverHandle
) -> None:
    secret = await signing_secret_of(api)
    resp = await api.post(
        TESTS,
        json={"callbackUrl": receiver.url("/ok"), "headers": {"Authorization": "Bearer t"}},
        headers=AUTH_ALPHA,
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["outcome"] == "delivered" and out["statusCode"] == 200 and out["error"] is None
    assert out["durationMs"] >= 0 and out["responseExcerpt"] == '{"ok": true}'
    [req] = receiver.requests
    payload = verify(req, secret)
    assert payload["type"] == "relay.ping" and payload["data"]["client"] == "alpha"
    assert req.headers["authorization"] == "Bearer t"


async def test_a_failing_receiver_is_reported_failed_with_its_status(
    api: AsyncTestClient[Any], receiver: ReceiverHandle
) -> None:
    resp = await api.post(TESTS, json={"callbackUrl": receiver.url("/gone")}, headers=AUTH_ALPHA)
    assert resp.json()["outcome"] == "failed"
    assert resp.json()["statusCode"] == 410 and resp.json()["error"] == "http_410"
    reset = await api.post(TESTS, json={"callbackUrl": receiver.url("/reset")}, headers=AUTH_ALPHA)
    assert reset.json()["outcome"] == "failed" and reset.json()["statusCode"] is None


async def test_an_address_refused_at_connect_time_is_refused_and_never_connected(
    redis_sync: redis.Redis, redis_url: str, receiver: ReceiverHandle
) -> None:
    answers = iter(["93.184.215.14"])  # the check sees a public address, the send loopback

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(next(answers, "127.0.0.1"))]

    env = api_env(redis_url, RELAY_ALLOW_PRIVATE_CALLBACKS="false")
    async with AsyncTestClient(app=make_app(env, lookup=rebinding)) as api:
        url = f"http://rebind.example:{receiver.port}/ok"
        resp = await api.post(TESTS, json={"callbackUrl": url}, headers=AUTH_ALPHA)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outcome"] == "refused" and resp.json()["error"] == "ssrf_refused"
        refused = await api.post(
            TESTS, json={"callbackUrl": "http://10.0.0.1/x"}, headers=AUTH_ALPHA
        )
        assert refused.status_code == 400 and "10.0.0.0/8" in refused.json()["detail"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"callbackUrl": "ftp://x.example/"}, "callbackUrl"),
        ({"callbackUrl": "http://127.0.0.1/", "headers": {"Host": "x"}}, "'Host'"),
        ({"callbackUrl": "http://127.0.0.1/", "extra": 1}, "extra"),
        ({}, "callbackUrl"),
    ],
)
async def test_bad_test_delivery_input_is_a_400(
    api: AsyncTestClient[Any], payload: dict[str, Any], says: str
) -> None:
    resp = await api.post(TESTS, json=payload, headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["detail"]


async def test_test_deliveries_are_limited_per_client_then_429(
    redis_sync: redis.Redis, redis_url: str, receiver: ReceiverHandle
) -> None:
    env = api_env(redis_url, RELAY_TEST_DELIVERIES_PER_MINUTE="3")
    async with AsyncTestClient(app=make_app(env)) as api:
        ping = {"callbackUrl": receiver.url("/ok")}
        for _ in range(3):
            assert (await api.post(TESTS, json=ping, headers=AUTH_ALPHA)).status_code == 200
        over = await api.post(TESTS, json=ping, headers=AUTH_ALPHA)
        assert over.status_code == 429
        assert "the limit is 3" in over.json()["detail"]
        assert "RELAY_TEST_DELIVERIES_PER_MINUTE" in over.json()["detail"]
        assert 0 < int(over.headers["retry-after"]) <= 60
        assert (await api.post(TESTS, json=ping, headers=AUTH_BETA)).status_code == 200
    assert len(receiver.requests) == 4
    counters = [k for k in redis_sync.scan_iter(match="r:*quota*")]
    assert counters and all(0 < redis_sync.pttl(k) <= 60_000 for k in counters)


# ---- POST /v1/subscriptions/redeliver --------------------------------------------------------


async def test_bulk_redeliver_restarts_the_matching_exhausted_series_only(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    secret = await e2e.secret()
    run_a = e2e.run(outcome="completed", result=1)
    run_b = e2e.run(outcome="completed", result=2)
    on_a = [await e2e.subscribe(run_a, f"/flaky/4/a{i}") for i in range(3)]
    on_b = await e2e.subscribe(run_b, "/flaky/4/b")
    beta = await e2e.subscribe(run_a, "/flaky/4/beta", AUTH_BETA)
    ok = await e2e.subscribe(run_b, "/ok/fine")
    for sid in [*on_a, on_b]:
        await e2e.reach(sid, "exhausted")
    await e2e.reach(beta, "exhausted", AUTH_BETA)
    await e2e.reach(ok, "delivered")

    none = await e2e.api.post(
        f"{SUBS}/redeliver",
        json={"state": "exhausted", "since": "2999-01-01T00:00:00Z"},
        headers=AUTH_ALPHA,
    )
    assert none.status_code == 202 and none.json() == {"count": 0}
    resp = await e2e.api.post(
        f"{SUBS}/redeliver", json={"state": "exhausted", "runId": run_a}, headers=AUTH_ALPHA
    )
    assert resp.status_code == 202 and resp.json() == {"count": 3}
    for sid in on_a:
        await e2e.reach(sid, "delivered")
        view = (await e2e.api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()
        assert [a["series"] for a in view["attempts"]] == [1, 1, 1, 1, 2]
    assert await e2e.state(on_b, AUTH_ALPHA) == "exhausted"
    assert await e2e.state(beta, AUTH_BETA) == "exhausted"
    fifth = [r for r in e2e.receiver.requests if r.path == "/flaky/4/a0"]
    assert len(fifth) == 5 and len({r.webhook_id for r in fifth}) == 1
    assert verify(fifth[-1], secret)["data"]["subscriptionId"] == on_a[0]

    by_host = await e2e.api.post(
        f"{SUBS}/redeliver",
        json={"state": "exhausted", "callbackHost": "127.0.0.1", "until": "2999-01-01T00:00:00Z"},
        headers=AUTH_ALPHA,
    )
    assert by_host.json() == {"count": 1}
    await e2e.reach(on_b, "delivered")
    delivered = await e2e.api.post(
        f"{SUBS}/redeliver",
        json={"state": "delivered", "callbackHost": "nowhere.example"},
        headers=AUTH_ALPHA,
    )
    assert delivered.json() == {"count": 0}


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"state": "watching"}, "state"),
        ({"state": "exhausted", "since": "yesterday"}, "since"),
        ({"state": "exhausted", "until": "2026-01-01T00:00:00"}, "until"),
        ({"state": "exhausted", "runId": "a/b"}, "runId"),
        ({"state": "exhausted", "bogus": 1}, "bogus"),
        ({}, "state"),
    ],
)
async def test_bad_bulk_redeliver_filters_are_a_400_and_change_nothing(
    api: AsyncTestClient[Any], redis_sync: redis.Redis, payload: dict[str, Any], says: str
) -> None:
    before = everything(redis_sync)
    resp = await api.post(f"{SUBS}/redeliver", json=payload, headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["detail"]
    assert everything(redis_sync) == before


DEEP = b"[" * 3000 + b"]" * 3000


@pytest.mark.parametrize(
    ("method", "path", "raw", "says"),
    [
        ("POST", TESTS, b'{"callbackUrl":"http://127.0.0.1/\xff"}', "not UTF-8"),
        ("POST", f"{SUBS}/redeliver", b'{"state":"exhausted","runId":"\xff"}', "not UTF-8"),
        ("PUT", OPS, b'{"url":"http://127.0.0.1/\xfe"}', "not UTF-8"),
        ("POST", "/v1/runs", b'{"projectName":"\xff","callbackUrl":"http://x/"}', "not UTF-8"),
        ("POST", "/v1/runs", b'{"projectName":"p","metadata":' + DEEP + b"}", "too deeply"),
    ],
)
async def test_an_undecodable_body_is_a_400_on_every_json_route(
    api: AsyncTestClient[Any],
    redis_sync: redis.Redis,
    method: str,
    path: str,
    raw: bytes,
    says: str,
) -> None:
    before = everything(redis_sync)
    headers = {**AUTH_ALPHA, "Idempotency-Key": "undecodable-1"}
    resp = await api.request(method, path, content=raw, headers=headers)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["detail"]
    assert everything(redis_sync) == before


# ---- /v1/operational-webhook -------------------------------------------------------------------


async def test_operational_webhook_is_set_read_redacted_and_deleted_per_client(
    api: AsyncTestClient[Any], receiver: ReceiverHandle
) -> None:
    url = receiver.url("/ok/ops")
    put = await api.put(
        OPS, json={"url": url, "headers": {"Authorization": "ops-s3cret"}}, headers=AUTH_ALPHA
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"url": url, "headers": {"Authorization": "***"}}
    got = await api.get(OPS, headers=AUTH_ALPHA)
    assert got.json() == {"url": url, "headers": {"Authorization": "***"}}
    assert "ops-s3cret" not in got.text
    assert (await api.get(OPS, headers=AUTH_BETA)).status_code == 404
    assert (await api.delete(OPS, headers=AUTH_BETA)).status_code == 204
    assert (await api.get(OPS, headers=AUTH_ALPHA)).status_code == 200
    assert (await api.delete(OPS, headers=AUTH_ALPHA)).status_code == 204
    assert (await api.get(OPS, headers=AUTH_ALPHA)).status_code == 404


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"url": "ftp://x.example/"}, "url: must be an http:// or https:// URL"),
        # The field is `url` here, not a registration's callbackUrl:
        ({"url": "http://169.254.169.254/"}, "url host 169.254.169.254 resolves to"),
        ({"url": "http://x y/"}, "url must not contain whitespace"),
        ({"url": "http://127.0.0.1/", "headers": {"webhook-id": "x"}}, "'webhook-id'"),
        ({"url": "http://127.0.0.1/", "more": 1}, "more"),
    ],
)
async def test_bad_operational_webhooks_are_a_400(
    api: AsyncTestClient[Any], redis_sync: redis.Redis, payload: dict[str, Any], says: str
) -> None:
    before = everything(redis_sync)
    resp = await api.put(OPS, json=payload, headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert says in resp.json()["detail"]
    assert "callbackUrl" not in resp.json()["detail"]
    assert everything(redis_sync) == before


async def test_exhausted_and_gone_subscriptions_are_reported_signed_with_retries(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    secret = await e2e.secret()
    hook = {"url": e2e.receiver.url("/flaky/1/ops"), "headers": {"Authorization": "ops-tok"}}
    assert (await e2e.api.put(OPS, json=hook, headers=AUTH_ALPHA)).status_code == 200
    run_id = e2e.run(outcome="completed", result=1)
    gone = await e2e.subscribe(run_id, "/gone")
    failing = await e2e.subscribe(run_id, "/status/500")
    quiet = await e2e.subscribe(run_id, "/gone/beta", AUTH_BETA)
    await e2e.reach(gone, "gone")
    await e2e.reach(failing, "exhausted")
    await e2e.reach(quiet, "gone", AUTH_BETA)

    def ops() -> list[Any]:
        return [r for r in e2e.receiver.requests if r.path == "/flaky/1/ops"]

    # Each event fails once (flaky/1 per webhook-id), then arrives: 2 events x 2 attempts.
    await wait_until(lambda: len(ops()) == 4, timeout=20)
    by_type: dict[str, list[Any]] = {}
    for req in ops():
        assert req.headers["authorization"] == "ops-tok"
        by_type.setdefault(verify(req, secret)["type"], []).append(req)
    assert set(by_type) == {"subscription.gone", "subscription.exhausted"}
    for reqs in by_type.values():
        assert len({r.webhook_id for r in reqs}) == 1
    gone_data = json.loads(by_type["subscription.gone"][0].body)["data"]
    view = (await e2e.api.get(f"{SUBS}/{gone}", headers=AUTH_ALPHA)).json()
    assert gone_data == view
    exhausted_data = json.loads(by_type["subscription.exhausted"][0].body)["data"]
    assert exhausted_data["id"] == failing and exhausted_data["state"] == "exhausted"


async def test_a_refused_intuned_key_is_reported_once_per_incident(e2e: E2E) -> None:
    secrets = [await e2e.secret(), await e2e.secret(AUTH_BETA)]
    for auth, path in ((AUTH_ALPHA, "/ok/ops-alpha"), (AUTH_BETA, "/ok/ops-beta")):
        assert (
            await e2e.api.put(OPS, json={"url": e2e.receiver.url(path)}, headers=auth)
        ).status_code
    await e2e.start_inproc_worker(INTUNED_API_KEY="a-wrong-key-0123456789")
    sids = [await e2e.subscribe(f"run-{i}", f"/ok/{i}") for i in range(3)]
    for sid in sids:
        await e2e.reach(sid, "delivered")
    await wait_until(
        lambda: {r.path for r in e2e.receiver.requests} >= {"/ok/ops-alpha", "/ok/ops-beta"}
    )
    ops = [r for r in e2e.receiver.requests if r.path.startswith("/ok/ops")]
    assert len(ops) == 2
    for req in ops:
        payload = verify(req, secrets)
        assert payload["type"] == "intuned.unauthorized"
        assert payload["data"]["statusCode"] == 401
    hooks = [json.loads(r.body) for r in e2e.receiver.requests if r.path.startswith("/ok/")]
    assert sum(h["type"] == "run.watch_failed" for h in hooks) == 3
