"""A stalled Redis is a 503, never a hang and never a 500: every request, however many arrive at
once, the console's pages too, and the API recovers by itself when Redis answers again.

Each test breaks a Redis of its own (``own_redis``): stalled is its process stopped with SIGSTOP
(connections still open, nothing answers), until SIGCONT. The app waits ``RELAY_REDIS_TIMEOUT``
(short here) for Redis. Concurrent requests go through httpx's ASGI transport (Litestar's test
client serves one request at a time); every wait is bounded by ``asyncio.wait_for``, so a request
left unanswered fails the test instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx
import pytest
import redis

from relay.console.auth import SESSION_COOKIE
from relay.embedded_redis import EmbeddedRedis
from relay.store import keys
from tests.support.api_helpers import PUBLIC_URL, api_env, body, make_app
from tests.support.console import csrf_of
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA

SUBS = "/v1/subscriptions"
BOUND = 30.0  # seconds: an answer later than this is a hang, and fails the test
T = TypeVar("T")


def env_of(server: EmbeddedRedis) -> dict[str, str]:
    return api_env(
        server.url,
        RELAY_REDIS_TIMEOUT="200ms",
        RELAY_CONSOLE_SECURE_COOKIE="false",
        RELAY_PUBLIC_URL="https://relay.example",
    )


async def answered(call: Awaitable[T]) -> T:
    """``call``'s result; a hang fails the test (instead of waiting forever)."""
    try:
        return await asyncio.wait_for(call, BOUND)
    except TimeoutError:
        pytest.fail(f"no answer within {BOUND} s")


@asynccontextmanager
async def relay_api(server: EmbeddedRedis) -> AsyncIterator[httpx.AsyncClient]:
    """The relay's app with its lifespan running, served concurrently on this event loop."""
    app = make_app(env_of(server))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://relay.test") as client,
    ):
        yield client


@contextmanager
def stalled(server: EmbeddedRedis) -> Iterator[None]:
    """This test's own Redis stops answering (SIGSTOP), then resumes (SIGCONT)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


def assert_unavailable(resp: httpx.Response, media: str = "application/json") -> None:
    assert resp.status_code == 503, (resp.request.method, resp.request.url, resp.text)
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.headers["content-type"].startswith(media)


def requests_of(sid: str) -> list[tuple[str, str, dict[str, Any] | None, dict[str, str]]]:
    """Reads and writes, several of them enqueueing work (the arq side of the same Redis)."""
    start = {"projectName": "demo-project", "api": "a", "parameters": {}, "callbackUrl": PUBLIC_URL}
    return [
        *[("GET", "/v1/signing-secret", None, AUTH_ALPHA)] * 6,
        ("POST", SUBS, body(run="run-2"), AUTH_ALPHA),
        ("GET", f"{SUBS}/{sid}", None, AUTH_ALPHA),
        ("POST", f"{SUBS}/redeliver", {"state": "gone"}, AUTH_ALPHA),
        ("POST", "/v1/runs", start, {**AUTH_ALPHA, "Idempotency-Key": "stall-1"}),
        ("POST", "/v1/test-deliveries", {"callbackUrl": PUBLIC_URL}, AUTH_ALPHA),
        ("PUT", "/v1/operational-webhook", {"url": PUBLIC_URL}, AUTH_ALPHA),
    ]


async def test_a_stalled_redis_is_a_503_for_each_of_many_concurrent_requests(
    own_redis: EmbeddedRedis,
) -> None:
    async with relay_api(own_redis) as api:
        created = await api.post(SUBS, json=body(), headers=AUTH_ALPHA)
        assert created.status_code == 201, created.text
        assert (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).status_code == 200
        with stalled(own_redis):
            sent = [
                api.request(method, path, json=payload, headers=auth)
                for method, path, payload, auth in requests_of(created.json()["id"])
            ]
            for resp in await answered(asyncio.gather(*sent)):
                assert_unavailable(resp)
            # The API is not left stuck behind them: a request sent afterwards is answered too.
            assert_unavailable(await answered(api.get("/v1/signing-secret", headers=AUTH_ALPHA)))
            assert (await answered(api.get("/readyz"))).status_code == 503
        # Redis answers again: so does the API, without a restart.
        secret = await answered(api.get("/v1/signing-secret", headers=AUTH_ALPHA))
        assert secret.status_code == 200, secret.text
        again = await answered(api.post(SUBS, json=body(run="run-3"), headers=AUTH_ALPHA))
        assert again.status_code == 201, again.text


async def sign_in(api: httpx.AsyncClient) -> httpx.Response:
    form = await api.get("/console/sign-in")
    data = {"api_key": ALPHA_KEY, "_csrf_token": csrf_of(form)}
    return await answered(api.post("/console/sign-in", data=data))


async def test_the_console_is_a_503_page_while_redis_is_stalled(own_redis: EmbeddedRedis) -> None:
    async with relay_api(own_redis) as api:
        assert (await sign_in(api)).status_code == 303
        assert api.cookies.get(SESSION_COOKIE)  # the session is read from Redis on every page
        session = dict(api.cookies)
        with stalled(own_redis):
            # A visitor without a session: the form's answer deletes its (new) session id.
            api.cookies.clear()
            visits = [("/console/sign-in", {})]
            # A signed-in visitor: every page reads the session first.
            visits += [
                (page, session) for page in ("/console/sign-in", "/console", "/console/signing")
            ]
            for page, cookies in visits:
                api.cookies.update(cookies)
                resp = await answered(api.get(page))
                assert_unavailable(resp, "text/html")
                assert "Storage is unavailable" in resp.text
        assert (await answered(api.get("/console"))).status_code == 200


async def test_a_sign_in_redis_refuses_to_store_is_a_503_page(own_redis: EmbeddedRedis) -> None:
    db = redis.Redis.from_url(own_redis.url)
    async with relay_api(own_redis) as api:
        form = await api.get("/console/sign-in")
        db.config_set("maxmemory-policy", "noeviction")
        db.config_set("maxmemory", 1)  # full: every write is refused (OOM), reads still answer
        try:
            for key in (ALPHA_KEY, "not-a-key"):  # a session to store; a failure to count
                data = {"api_key": key, "_csrf_token": csrf_of(form)}
                resp = await answered(api.post("/console/sign-in", data=data))
                assert_unavailable(resp, "text/html")
                assert "Storage is unavailable" in resp.text
                assert not db.keys(keys.CONSOLE_SESSIONS + "*")  # nobody was signed in
        finally:
            db.config_set("maxmemory", 0)
            db.close()
        assert (await sign_in(api)).status_code == 303
        assert (await answered(api.get("/console"))).status_code == 200
