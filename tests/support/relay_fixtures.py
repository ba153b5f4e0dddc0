"""Fixtures that run the relay itself: settings for tests, an API client, and the calls tests make
on it (workers: ``tests.support.workers``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from relay.api.app import create_app
from relay.fake_intuned import FakeIntunedHandle
from relay.settings import Settings
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID

ALPHA_KEY = "alpha-key-0123456789abcdef"
BETA_KEY = "beta-key-0123456789abcdef"
AUTH_ALPHA = {"Authorization": f"Bearer {ALPHA_KEY}"}
AUTH_BETA = {"Authorization": f"Bearer {BETA_KEY}"}


def base_env(redis_url: str, intuned_base: str) -> dict[str, str]:
    """A fast, loopback-friendly configuration for tests."""
    return {
        "REDIS_URL": redis_url,
        "INTUNED_API_BASE_URL": intuned_base,
        "INTUNED_WORKSPACE_ID": FAKE_WORKSPACE_ID,
        "INTUNED_API_KEY": FAKE_API_KEY,
        "RELAY_API_KEYS": f"alpha:{ALPHA_KEY},beta:{BETA_KEY}",
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_RETRY_SCHEDULE": "50ms,100ms,150ms",
        "RELAY_DELIVERY_TIMEOUT": "1s",
        # Tests of the retry schedule count every attempt; the breaker (which holds a failing
        # host's attempts back for a cool-down) is switched on by the tests that are about it.
        "RELAY_BREAKER_THRESHOLD": "0",
        "RELAY_POLL_INTERVAL": "100ms",
        "RELAY_POLL_MAX_INTERVAL": "300ms",
        "RELAY_WATCH_TIMEOUT": "1h",
        "RELAY_RESULT_TTL": "1h",
        "RELAY_INTUNED_TIMEOUT": "1s",
        "RELAY_NOT_FOUND_GRACE": "500ms",
        "RELAY_WORKER_METRICS_PORT": "0",
        "RELAY_SHUTDOWN_GRACE": "5s",
        "RELAY_LOG_FORMAT": "json",
    }


@pytest.fixture
def relay_env(redis_sync: Any, redis_url: str, fake_intuned: FakeIntunedHandle) -> dict[str, str]:
    """Environment for a relay wired to the test Redis and fake Intuned (flushed Redis)."""
    return base_env(redis_url, fake_intuned.base_url)


@pytest.fixture
async def api(relay_env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API app in-process (its lifespan runs), talking to the test Redis."""
    settings = Settings.from_env(relay_env)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def subscribe(
    api: AsyncTestClient[Any],
    run_id: str,
    url: str,
    auth: dict[str, str] = AUTH_ALPHA,
    **extra: Any,
) -> dict[str, Any]:
    """POST /v1/subscriptions for a ``demo-project`` run (more fields by keyword): 201, its view."""
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url, **extra}
    resp = await api.post("/v1/subscriptions", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def subscription_view(
    api: AsyncTestClient[Any], sid: str, auth: dict[str, str] = AUTH_ALPHA
) -> dict[str, Any]:
    """A subscription as GET /v1/subscriptions/{id} shows it (200)."""
    resp = await api.get(f"/v1/subscriptions/{sid}", headers=auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def subscription_state(api: AsyncTestClient[Any], sid: str, auth: dict[str, str]) -> str:
    """The current state of a subscription via the API."""
    return str((await subscription_view(api, sid, auth))["state"])


async def reach_state(
    api: AsyncTestClient[Any],
    sid: str,
    state: str,
    auth: dict[str, str] = AUTH_ALPHA,
    timeout: float = 20.0,
) -> None:
    """Wait until a subscription is in ``state`` (read through the API)."""

    async def check() -> bool:
        return await subscription_state(api, sid, auth) == state

    await wait_until(check, timeout=timeout)


async def signing_secret_of(api: AsyncTestClient[Any], auth: dict[str, str] = AUTH_ALPHA) -> str:
    """The client's signing secret (created on first use)."""
    return str((await api.get("/v1/signing-secret", headers=auth)).json()["secret"])
