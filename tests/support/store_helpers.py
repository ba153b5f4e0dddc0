"""Opening the store's sides in tests (``open_stores``, the ``store`` fixture), registering
documents and driving a run to its end as the API and a worker would."""

from __future__ import annotations

from typing import Any, Final

import pytest
from redis.asyncio import Redis

from relay.model import Attempt, RegisterAction, SubscriptionDoc, run_key
from relay.settings import Settings
from relay.store import Stores, run_digest
from tests.support.api_helpers import WORKSPACE

SECRET: Final = "whsec_dGVzdC1zZWNyZXQ="  # the signing secret ``register`` gives a client


def store_settings(**overrides: Any) -> Settings:
    """Settings for a store opened by a test (the store reads TTLs, quotas and timeouts)."""
    fields: dict[str, Any] = {
        "redis_url": "redis://127.0.0.1:1/0",
        "intuned_workspace_id": WORKSPACE,
        "api_keys": {"alpha-key-0123456789": "alpha"},
        "result_ttl": 3600.0,
    }
    fields.update(overrides)
    return Settings(**fields)


def open_stores(redis: Redis, **overrides: Any) -> Stores:
    """Every side of the store over ``redis``."""
    return Stores.open(redis, store_settings(**overrides))


@pytest.fixture
def store(redis_client: Redis) -> Stores:
    """Every side of the store on the suite's Redis, flushed for this test."""
    return open_stores(redis_client)


async def finish_run(stores: Stores, run_key: str, status: str, body: bytes) -> int:
    """Record a fetched result for a watched run and fan it out to the end (a worker's poll);
    returns how many subscriptions started delivering."""
    rd = run_digest(run_key)
    await stores.watches.record_result(rd, status, body, 0, 0.0)
    return await stores.watches.fan_out_all(rd)


def rd_of(doc: SubscriptionDoc) -> str:
    """The digest of a document's run (its watch's name)."""
    return run_digest(run_key(doc.project_name, doc.run_id))


async def register(store: Stores, doc: SubscriptionDoc) -> RegisterAction:
    """Register ``doc`` on its run (signing secret ``SECRET``); what registering did."""
    rk = run_key(doc.project_name, doc.run_id)
    return (await store.subscriptions.register(doc, rk, SECRET)).action


async def register_all(store: Stores, *docs: SubscriptionDoc) -> None:
    """``register`` each document, in order."""
    for doc in docs:
        await register(store, doc)


async def terminal(store: Stores, doc: SubscriptionDoc, status: str, body: bytes = b"{}") -> int:
    """``finish_run`` for a document's run."""
    return await finish_run(store, run_key(doc.project_name, doc.run_id), status, body)


def attempt(n: int = 1, code: int | None = 200) -> Attempt:
    """Attempt ``n``, answered ``code`` (None: no answer) at 1 ms after 1 ms, no error."""
    return Attempt(attempt=n, at=1, status_code=code, error=None, duration_ms=1.0)
