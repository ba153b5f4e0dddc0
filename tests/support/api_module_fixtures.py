"""Module-scoped API fixtures for test modules that share one app and one Redis client.

``shared_api`` is an in-process API (Litestar's test client) built once per test module;
``shared_store`` is the store on the suite's Redis, for setting up states a worker would reach. A
module using them marks itself ``pytest.mark.asyncio(loop_scope="module")`` and asks for
``redis_sync`` (which flushes Redis) where each test needs a clean start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from relay.store import Stores
from tests.support.api_helpers import api_client, api_env
from tests.support.store_helpers import open_stores


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """One API app for the whole test module."""
    async with api_client(api_env(redis_url)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_store(redis_url: str) -> AsyncIterator[Stores]:
    """The stores on the suite's Redis, for the whole test module."""
    client = aioredis.Redis.from_url(redis_url)
    yield open_stores(client)
    await client.aclose()
