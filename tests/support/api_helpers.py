"""Helpers for the API tests: an in-process app on the suite's Redis, with DNS kept off the network.

The SSRF check resolves callback hosts while registering. These tests give the app a fixed
resolver (the seam ``app.state.callback_lookup``), so a test never depends on real DNS; the
resolver itself is tested in ``test_callbacks_ssrf.py``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient

from relay.api.app import create_app
from relay.model import EVENT_STATUSES, SubscriptionDoc, new_subscription_id
from relay.settings import Settings
from relay.store import keys
from relay.webhooks.callbacks import IPAddress, Lookup
from tests.support.intuned_fixtures import FAKE_WORKSPACE_ID
from tests.support.relay_fixtures import base_env

PUBLIC_HOST = "hooks.example"  # resolves to a public address
PRIVATE_HOST = "internal.example"  # resolves to an RFC 1918 address
MIXED_HOST = "mixed.example"  # one public and one loopback address: refused
PUBLIC_URL = f"https://{PUBLIC_HOST}/hook"
WORKSPACE = FAKE_WORKSPACE_ID

_DNS: dict[str, list[str]] = {
    PUBLIC_HOST: ["93.184.215.14"],
    PRIVATE_HOST: ["10.20.30.40"],
    MIXED_HOST: ["93.184.215.14", "127.0.0.1"],
    "localhost": ["127.0.0.1"],
}


async def fixed_dns(host: str, port: int) -> list[IPAddress]:
    """A resolver with a fixed table; any other name does not resolve (like ``.invalid``)."""
    try:
        return [ipaddress.ip_address(a) for a in _DNS[host.lower().rstrip(".")]]
    except KeyError:
        raise OSError(f"[Errno -2] Name or service not known: {host}") from None


async def public_dns(host: str, port: int) -> list[IPAddress]:
    """A resolver under which every name is one public address (for fuzzing registrations)."""
    return [ipaddress.ip_address("93.184.215.14")]


def api_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """The test environment (see ``base_env``), no fake Intuned needed: the API never calls it."""
    return {**base_env(redis_url, "http://127.0.0.1:9"), **overrides}


def make_app(env: dict[str, str], lookup: Lookup = fixed_dns) -> Litestar:
    """The relay's app from ``env``, resolving callback hosts with ``lookup``."""
    app = create_app(Settings.from_env(env))
    app.state.callback_lookup = lookup
    return app


@asynccontextmanager
async def api_client(env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """An AsyncTestClient on ``make_app(env)`` with its lifespan running."""
    async with AsyncTestClient(app=make_app(env)) as client:
        yield client


def stored_keys(r: redis.Redis) -> list[str]:
    """Every relay key that a registration would write (subscriptions, indexes, watches, due)."""
    found: list[str] = []
    for pattern in (keys.PREFIX + "*",):
        found += [k.decode() for k in r.scan_iter(match=pattern)]
    return sorted(found)


def body(
    project: str = "demo-project", run: str = "run-1", url: str = PUBLIC_URL, **extra: Any
) -> dict[str, Any]:
    """A valid POST /v1/subscriptions body, with fields overridden or added by keyword."""
    return {"projectName": project, "runId": run, "callbackUrl": url, **extra}


def snapshot(r: redis.Redis, keys: Iterable[str]) -> dict[str, Any]:
    """The values (not TTLs) stored under ``keys``, to compare before and after a request."""
    state: dict[str, Any] = {}
    for key in sorted(set(keys)):
        kind = r.type(key).decode()
        if kind == "hash":
            state[key] = r.hgetall(key)
        elif kind == "zset":
            state[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            state[key] = sorted(r.smembers(key))
        elif kind == "list":
            state[key] = r.lrange(key, 0, -1)
        elif kind == "string":
            state[key] = r.get(key)
    return state


def everything(r: redis.Redis) -> dict[str, Any]:
    """A snapshot of every relay key (``r:*``)."""
    return snapshot(r, (k.decode() for k in r.scan_iter(match="r:*")))


def make_doc(
    client: str, project: str, run: str, created_at: int, /, *, metadata: bytes = b"{}", **more: Any
) -> SubscriptionDoc:
    """A subscription document as the API would build it, with a chosen creation time: on
    WORKSPACE, to PUBLIC_URL, for every event; any field by keyword (``id``, ``workspace_id``,
    ``callback_url``, ``events``, ``headers``...) wins over these."""
    fields: dict[str, Any] = {
        "id": new_subscription_id(),
        "client": client,
        "workspace_id": WORKSPACE,
        "project_name": project,
        "run_id": run,
        "callback_url": PUBLIC_URL,
        "events": EVENT_STATUSES,
        "metadata": msgspec.Raw(metadata),
        "created_at": created_at,
    }
    return SubscriptionDoc(**(fields | more))
