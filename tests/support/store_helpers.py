"""Opening the store's sides in tests, and driving a run to its end as a worker would."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from relay.settings import Settings
from relay.store import Stores, run_digest
from tests.support.api_helpers import WORKSPACE


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


async def finish_run(stores: Stores, run_key: str, status: str, body: bytes) -> int:
    """Record a fetched result for a watched run and fan it out to the end (a worker's poll);
    returns how many subscriptions started delivering."""
    rd = run_digest(run_key)
    await stores.watches.record_result(rd, status, body, 0, 0.0)
    return await stores.watches.fan_out_all(rd)
