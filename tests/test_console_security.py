"""The console's doors: no page or action without a session, CSRF on every form, one client's
session never shows another's data, a signed-out cookie is dead, failed sign-ins are limited.

Plain HTTP against the in-process app on the suite's Redis (the browser tests drive Chromium).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from httpx import Response
from litestar.testing import AsyncTestClient

from relay.console.auth import CSRF_COOKIE, SESSION_COOKIE
from relay.embedded_redis import free_port
from relay.store import Stores
from tests.support.api_helpers import api_client, api_env, body, everything, make_app
from tests.support.console import csrf_of, post_form, sign_in
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, AUTH_BETA, BETA_KEY

PAGES = ("/console", "/console/subscriptions", "/console/signing")


def _env(redis_url: str, **overrides: str) -> dict[str, str]:
    return api_env(redis_url, RELAY_CONSOLE_SECURE_COOKIE="false", **overrides)


@pytest.fixture
async def app(redis_sync: redis.Redis, redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(_env(redis_url)) as client:
        client.follow_redirects = False
        yield client


async def _subscribe(app: AsyncTestClient[Any], auth: dict[str, str], run: str) -> str:
    resp = await app.post("/v1/subscriptions", json=body(run=run), headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _data(r: redis.Redis) -> dict[str, Any]:
    """Every relay key but the console's own sessions and sign-in counts."""
    return {k: v for k, v in everything(r).items() if not k.startswith("r:ui:")}


async def test_no_page_or_action_works_without_a_session(
    app: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    sid = await _subscribe(app, AUTH_ALPHA, "run-a")
    before = _data(redis_sync)
    for page in (
        *PAGES,
        f"/console/subscriptions/{sid}",
        f"/console/subscriptions/{sid}/event.json",
    ):
        resp = await app.get(page)
        assert resp.status_code == 303, page
        assert resp.headers["location"] == "/console/sign-in"
    # A valid CSRF pair (from the sign-in form) but no session: every action is refused.
    token = csrf_of(await app.get("/console/sign-in"))
    for action in (
        f"/console/subscriptions/{sid}/redeliver",
        f"/console/subscriptions/{sid}/delete",
        "/console/redeliver-exhausted",
        "/console/signing/reveal",
        "/console/signing/rotate",
        "/console/test-delivery",
    ):
        resp = await app.post(action, data={"_csrf_token": token})
        assert resp.status_code == 401, action
        assert "Sign in first" in resp.text
        assert "whsec_" not in resp.text
    assert _data(redis_sync) == before
    assert not list(redis_sync.scan_iter(match="r:ui:sess:*"))  # anonymous visits store nothing


async def test_forms_without_a_matching_csrf_token_are_refused(
    app: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    sid = await _subscribe(app, AUTH_ALPHA, "run-a")
    assert (await sign_in(app, ALPHA_KEY)).status_code == 303
    secret = (await app.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    before = _data(redis_sync)
    token = csrf_of(await app.get("/console/signing"))
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    for action in ("/console/signing/rotate", f"/console/subscriptions/{sid}/delete"):
        for fields in ({}, {"_csrf_token": forged}, {"_csrf_token": ""}):
            resp = await app.post(action, data=fields)
            assert resp.status_code == 403, (action, fields)
            assert "security token" in resp.text
    # The token is bound to this browser's CSRF cookie: another browser's valid token fails too.
    async with api_client(_env(app.app.state.settings.redis_url)) as other:
        other_token = csrf_of(await other.get("/console/sign-in"))
    resp = await app.post("/console/signing/rotate", data={"_csrf_token": other_token})
    assert resp.status_code == 403
    assert _data(redis_sync) == before
    assert (await app.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"] == secret
    # The sign-in form is protected too.
    app.cookies.clear()
    resp = await app.post("/console/sign-in", data={"api_key": ALPHA_KEY})
    assert resp.status_code == 403


async def test_the_bearer_api_needs_no_csrf_token(app: AsyncTestClient[Any]) -> None:
    resp = await app.post("/v1/signing-secret/rotate", headers=AUTH_ALPHA)
    assert resp.status_code == 200
    assert "set-cookie" not in resp.headers  # neither sessions nor CSRF cookies reach /v1


async def test_one_clients_session_never_shows_another_clients_data(
    app: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    mine = await _subscribe(app, AUTH_ALPHA, "run-alpha")
    theirs = await _subscribe(app, AUTH_BETA, "run-beta")
    beta_secret = (await app.get("/v1/signing-secret", headers=AUTH_BETA)).json()["secret"]
    await sign_in(app, ALPHA_KEY)
    listing = await app.get("/console/subscriptions")
    assert mine in listing.text
    assert theirs not in listing.text
    assert "run-beta" not in (await app.get("/console")).text
    for page in (f"/console/subscriptions/{theirs}", f"/console/subscriptions/{theirs}/event.json"):
        resp = await app.get(page)
        assert resp.status_code == 404, page
        assert "run-beta" not in resp.text
    before = _data(redis_sync)
    for action in ("redeliver", "delete"):
        page = f"/console/subscriptions/{mine}"
        resp = await post_form(app, page, f"/console/subscriptions/{theirs}/{action}")
        assert resp.status_code == 404, action
    assert _data(redis_sync) == before
    revealed = await post_form(app, "/console/signing", "/console/signing/reveal")
    assert revealed.status_code == 200
    assert "whsec_" in revealed.text
    assert beta_secret not in revealed.text
    assert revealed.headers["cache-control"] == "no-store"


async def test_a_signed_out_cookie_is_dead(
    app: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    await sign_in(app, ALPHA_KEY)
    cookie = app.cookies[SESSION_COOKIE]
    assert (await app.get("/console")).status_code == 200
    assert len(list(redis_sync.scan_iter(match="r:ui:sess:*"))) == 1
    out = await post_form(app, "/console", "/console/sign-out")
    assert out.status_code == 303
    assert out.headers["location"].startswith("/console/sign-in")
    assert not list(redis_sync.scan_iter(match="r:ui:sess:*"))  # gone server-side
    app.cookies.set(SESSION_COOKIE, cookie, path="/console")  # replay the old cookie
    resp = await app.get("/console")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/sign-in"


async def test_a_key_removed_from_the_configuration_ends_its_sessions(
    app: AsyncTestClient[Any], redis_url: str
) -> None:
    await sign_in(app, ALPHA_KEY)
    cookie = app.cookies[SESSION_COOKIE]
    async with api_client(_env(redis_url, RELAY_API_KEYS=f"beta:{BETA_KEY}")) as later:
        later.follow_redirects = False
        later.cookies.set(SESSION_COOKIE, cookie, path="/console")
        resp = await later.get("/console")
        assert resp.status_code == 303
        assert resp.headers["location"] == "/console/sign-in"


async def _signed_in_cookies(redis_url: str, base_url: str, **env: str) -> list[set[str]]:
    """Sign in over ``base_url``; the flags of the CSRF and the session cookie. The client is
    httpx's (a cookie jar that, like every non-browser client, keeps a Secure cookie from
    plain http to itself): the sign-in must work over http as well as https."""
    app = make_app(api_env(redis_url, **env))
    async with AsyncTestClient(app=app, base_url=base_url) as client:
        client.follow_redirects = False
        form = await client.get("/console/sign-in")
        csrf_cookie = _cookie(form, CSRF_COOKIE)
        resp = await client.post(
            "/console/sign-in", data={"api_key": ALPHA_KEY, "_csrf_token": csrf_of(form)}
        )
        assert resp.status_code == 303, resp.text
        session_cookie = _cookie(resp, SESSION_COOKIE)
        assert "max-age=3600" in session_cookie.lower()
        assert (await client.get("/console")).status_code == 200
    flags = [{part.strip().lower() for part in c.split(";")} for c in (csrf_cookie, session_cookie)]
    for cookie in flags:
        assert {"httponly", "samesite=strict", "path=/console"} <= cookie, cookie
    return flags


async def test_cookies_are_secure_behind_https_by_default(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    # RELAY_CONSOLE_SECURE_COOKIE defaults to auto: Secure exactly when the request is https.
    for cookie in await _signed_in_cookies(redis_url, "https://relay.example"):
        assert "secure" in cookie
    # TLS ended by a proxy in front: the form's cookie is Secure (this client, talking plain
    # http to the relay itself, would then rightly keep it to itself: no sign-in here).
    app = make_app(api_env(redis_url))
    async with AsyncTestClient(app=app, base_url="http://relay.internal") as client:
        form = await client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in _cookie(form, CSRF_COOKIE).lower()
    for cookie in await _signed_in_cookies(redis_url, "http://127.0.0.1:8080"):
        assert "secure" not in cookie


async def test_the_setting_forces_secure_cookies_on_or_off(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    on = await _signed_in_cookies(
        redis_url, "https://r.example", RELAY_CONSOLE_SECURE_COOKIE="true"
    )
    assert all("secure" in cookie for cookie in on)
    off = await _signed_in_cookies(
        redis_url, "https://r.example", RELAY_CONSOLE_SECURE_COOKIE="false"
    )
    assert all("secure" not in cookie for cookie in off)


def _cookie(resp: Response, name: str) -> str:
    return next(c for c in resp.headers.get_list("set-cookie") if c.startswith(name + "="))


async def test_failed_sign_ins_are_limited_per_address(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    async with api_client(_env(redis_url, RELAY_CONSOLE_SIGNIN_LIMIT="3")) as client:
        client.follow_redirects = False
        for _ in range(3):
            resp = await sign_in(client, "wrong-key-0123456789")
            assert resp.status_code == 401
            assert "not valid" in resp.text
            assert "wrong-key" not in resp.text  # the typed key is never echoed
        resp = await sign_in(client, ALPHA_KEY)  # even the right key waits now
        assert resp.status_code == 429
        assert int(resp.headers["retry-after"]) > 0
        assert (await client.get("/console")).status_code == 303  # not signed in
    # A different address is not held back (each address has its own count).
    redis_sync.delete(*redis_sync.keys("r:ui:signin:*"))
    async with api_client(_env(redis_url, RELAY_CONSOLE_SIGNIN_LIMIT="3")) as client:
        client.follow_redirects = False
        assert (await sign_in(client, ALPHA_KEY)).status_code == 303


async def test_each_request_renews_the_session(
    app: AsyncTestClient[Any], redis_sync: redis.Redis
) -> None:
    await sign_in(app, ALPHA_KEY)
    [key] = list(redis_sync.scan_iter(match="r:ui:sess:*"))
    redis_sync.pexpire(key, 5_000)  # as if the session had been idle for almost an hour
    assert (await app.get("/console/subscriptions")).status_code == 200
    assert redis_sync.pttl(key) > 3_000_000  # back to RELAY_CONSOLE_SESSION_TTL (1 h)
    redis_sync.delete(key)  # an idle session expires: the cookie no longer opens a page
    assert (await app.get("/console")).status_code == 303


async def test_storage_down_is_a_503_page_never_a_500(app: AsyncTestClient[Any]) -> None:
    await sign_in(app, ALPHA_KEY)
    live = app.app.state.store
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    app.app.state.store = Stores.open(dead, app.app.state.settings)  # the data store is down
    try:
        reveal = post_form(app, "/console/signing", "/console/signing/reveal")
        for resp in (
            await app.get("/console"),
            await app.get("/console/subscriptions"),
            await reveal,
        ):
            assert resp.status_code == 503, resp.url
            assert resp.headers["content-type"].startswith("text/html")
            assert int(resp.headers["retry-after"]) > 0
            assert "Storage is unavailable" in resp.text
    finally:
        app.app.state.store = live
        await dead.aclose()
