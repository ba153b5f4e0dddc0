"""Honest failures: every way Redis can refuse the API is a 503 with ``Retry-After`` and a JSON
``detail`` saying which, never a 500, and a refused write changes nothing.

Each test breaks a Redis of its own (``own_redis``) for real: full (``maxmemory`` below what it
holds, ``noeviction``), read-only (``REPLICAOF`` a closed loopback port), busy (a Lua script
that never ends, past ``busy-reply-threshold``, then ``SCRIPT KILL``), and stopped.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.embedded_redis import EmbeddedRedis, free_port
from tests.support.api_helpers import api_client, api_env, body, everything
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA, wait_until

SUBS = "/v1/subscriptions"


@pytest.fixture
def db(own_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def api(own_redis: EmbeddedRedis) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(api_env(own_redis.url)) as client:
        yield client


async def subscribe(api: AsyncTestClient[Any], run: str = "run-1") -> str:
    resp = await api.post(SUBS, json=body(run=run), headers=AUTH_ALPHA)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def assert_unavailable(resp: httpx.Response, words: str) -> None:
    """A 503 with a usable Retry-After and a JSON detail containing ``words``."""
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.headers["content-type"].startswith("application/json")
    answer = resp.json()
    assert answer["statusCode"] == 503
    assert words in answer["detail"], answer


def writes(sid: str) -> list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]:
    """Requests that must write to Redis (beta's first secret is created on first use)."""
    return [
        ("POST", SUBS, body(run="run-2"), AUTH_ALPHA),
        ("DELETE", f"{SUBS}/{sid}", None, AUTH_ALPHA),
        ("POST", "/v1/signing-secret/rotate", None, AUTH_ALPHA),
        ("GET", "/v1/signing-secret", None, AUTH_BETA),
    ]


@contextmanager
def full(db: redis.Redis) -> Iterator[None]:
    """maxmemory below what Redis already holds, noeviction: every write is refused (OOM)."""
    db.config_set("maxmemory-policy", "noeviction")
    db.config_set("maxmemory", 1)
    try:
        yield
    finally:
        db.config_set("maxmemory", 0)


@contextmanager
def read_only(db: redis.Redis) -> Iterator[None]:
    """A replica of a master that never answers: it stays read-only (READONLY)."""
    db.replicaof("127.0.0.1", str(free_port()))
    try:
        yield
    finally:
        db.replicaof("NO", "ONE")


@pytest.mark.parametrize(
    ("breaker", "words"), [(full, "maxmemory"), (read_only, "read-only")], ids=["oom", "readonly"]
)
async def test_refused_writes_are_503_and_write_nothing(
    api: AsyncTestClient[Any],
    db: redis.Redis,
    breaker: Callable[[redis.Redis], AbstractContextManager[None]],
    words: str,
) -> None:
    sid = await subscribe(api)
    await api.get("/v1/signing-secret", headers=AUTH_ALPHA)
    before = everything(db)
    with breaker(db):
        for method, path, payload, auth in writes(sid):
            resp = await api.request(method, path, json=payload, headers=auth)
            assert_unavailable(resp, words)
        # Reads still answer, Redis still answers PING (ready), and nothing was written.
        assert (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()["state"] == "watching"
        assert (await api.get("/readyz")).status_code == 200
        assert everything(db) == before
    assert (await api.post(SUBS, json=body(run="run-2"), headers=AUTH_ALPHA)).status_code == 201


def is_busy(db: redis.Redis) -> bool:
    try:
        db.ping()
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY ")
    return False


async def test_redis_busy_with_a_script_is_503_until_the_script_is_killed(
    api: AsyncTestClient[Any], db: redis.Redis, own_redis: EmbeddedRedis
) -> None:
    sid = await subscribe(api)
    db.config_set("busy-reply-threshold", 50)  # ms a script may run before others get BUSY
    ended: list[BaseException] = []

    def run_forever() -> None:
        with redis.Redis.from_url(own_redis.url) as blocker:
            try:
                blocker.eval("while true do end", 0)
            except redis.ResponseError as exc:  # "Script killed by user with SCRIPT KILL"
                ended.append(exc)

    thread = threading.Thread(target=run_forever, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: is_busy(db), timeout=10, interval=0.01)
        checks = [
            ("GET", f"{SUBS}/{sid}", None, AUTH_ALPHA),
            ("GET", SUBS, None, AUTH_ALPHA),
            *writes(sid),
        ]
        for method, path, payload, auth in checks:
            resp = await api.request(method, path, json=payload, headers=auth)
            assert_unavailable(resp, "busy")
        ready = await api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["detail"] == "redis: busy"
    finally:
        with redis.Redis.from_url(own_redis.url) as killer:
            killer.script_kill()
        thread.join(10)
    assert ended and "SCRIPT KILL" in str(ended[0])
    assert (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).status_code == 200


async def test_redis_stopped_is_503_on_every_route(
    api: AsyncTestClient[Any], own_redis: EmbeddedRedis
) -> None:
    sid = await subscribe(api)
    own_redis.stop()
    routes = [
        ("POST", SUBS, body(run="run-2")),
        ("GET", f"{SUBS}/{sid}", None),
        ("GET", f"{SUBS}?state=watching", None),
        ("DELETE", f"{SUBS}/{sid}", None),
        ("POST", f"{SUBS}/{sid}/redeliver", None),
        ("GET", "/v1/runs/demo-project/run-1", None),
        ("GET", "/v1/signing-secret", None),
        ("POST", "/v1/signing-secret/rotate", None),
    ]
    for method, path, payload in routes:
        resp = await api.request(method, path, json=payload, headers=AUTH_ALPHA)
        assert_unavailable(resp, "unavailable")
    ready = await api.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/metrics")).status_code == 200  # without the Redis-backed gauge
