"""POST /v1/ingress/intuned/{token}: only the right token with its own secret header does anything.

Runs are started through POST /v1/runs against the fake Intuned (API in-process); the sink the
relay sent with each start (token URL and secret header) is read back from the fake's start log.
Every refused push must leave Redis exactly as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle
from relay.model import run_key
from relay.store import keys
from relay.store.keys import WatchField
from tests.support.api_helpers import api_client, everything
from tests.support.relay_fixtures import AUTH_ALPHA, base_env

PUBLIC = "https://relay.example.test"
SECRET_HEADER = "x-relay-ingress-secret"


@pytest.fixture
async def api(
    redis_sync: redis.Redis, redis_url: str, fake_intuned: FakeIntunedHandle
) -> AsyncIterator[AsyncTestClient[Any]]:
    env = {**base_env(redis_url, fake_intuned.base_url), "RELAY_PUBLIC_URL": PUBLIC}
    async with api_client(env) as client:
        yield client


async def start(api: AsyncTestClient[Any], fake: FakeIntunedHandle, key: str) -> dict[str, Any]:
    """Start a run through the relay; its id, ingress path and secret header."""
    body = {"projectName": "demo-project", "callbackUrl": "http://127.0.0.1:9/h", "api": "a"}
    body["parameters"] = {}
    resp = await api.post("/v1/runs", json=body, headers={**AUTH_ALPHA, "Idempotency-Key": key})
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["runId"]
    [sink] = [s["body"]["sink"] for s in fake.state.start_log() if s["runId"] == run_id]
    return {
        "run_id": run_id,
        "path": sink["url"].removeprefix(PUBLIC),
        "headers": sink["headers"],
    }


def watch_fields(r: redis.Redis, run_id: str) -> dict[bytes, bytes]:
    rd = keys.run_digest(run_key("demo-project", run_id))
    return dict(r.hgetall(keys.watch(rd)))


async def test_the_right_token_and_secret_make_the_run_due_once_per_burst(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    run = await start(api, fake_intuned, "ing-1")
    w = watch_fields(redis_sync, run["run_id"])
    assert w[WatchField.EXPECTS_PUSH.encode()] == b"1" and WatchField.DEADLINE.encode() in w
    assert WatchField.PUSH_NEWS.encode() not in w
    resp = await api.post(run["path"], json={"apiInfo": {}}, headers=run["headers"])
    assert resp.status_code == 202, resp.text
    w = watch_fields(redis_sync, run["run_id"])
    assert w[WatchField.PUSH_NEWS.encode()] == b"1" and w[WatchField.PUSHED.encode()] == b"1"
    # A second push before the poll: the same state (coalesced), still 202.
    before = everything(redis_sync)
    again = await api.post(run["path"], content=b"not even json", headers=run["headers"])
    assert again.status_code == 202
    assert everything(redis_sync) == before


@pytest.mark.parametrize(
    "case", ["unknown token", "malformed token", "wrong secret", "no secret", "other run's secret"]
)
async def test_a_push_without_the_right_credentials_changes_nothing(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis, case: str
) -> None:
    run = await start(api, fake_intuned, "ing-a")
    other = await start(api, fake_intuned, "ing-b")
    path, headers = run["path"], dict(run["headers"])
    if case == "unknown token":
        path = path[:-6] + "AAAAAA"
    elif case == "malformed token":
        path = "/v1/ingress/intuned/x"
    elif case == "wrong secret":
        headers = {SECRET_HEADER: "nope"}
    elif case == "no secret":
        headers = {}
    else:
        headers = other["headers"]
    before = everything(redis_sync)
    resp = await api.post(path, json={"apiInfo": {}}, headers=headers)
    assert resp.status_code == (404 if "token" in case else 401), resp.text
    assert everything(redis_sync) == before
    assert "nope" not in resp.text and run["headers"][SECRET_HEADER] not in resp.text


async def test_an_oversized_push_is_413_and_changes_nothing(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    run = await start(api, fake_intuned, "ing-big")
    before = everything(redis_sync)
    big = b'{"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    resp = await api.post(
        run["path"], content=big, headers={**run["headers"], "content-type": "application/json"}
    )
    assert resp.status_code == 413, resp.text
    assert everything(redis_sync) == before


async def test_no_bearer_key_is_needed_and_none_is_accepted_instead_of_the_secret(
    api: AsyncTestClient[Any], fake_intuned: FakeIntunedHandle, redis_sync: redis.Redis
) -> None:
    run = await start(api, fake_intuned, "ing-bearer")
    before = everything(redis_sync)
    resp = await api.post(run["path"], json={}, headers=AUTH_ALPHA)
    assert resp.status_code == 401
    assert everything(redis_sync) == before
