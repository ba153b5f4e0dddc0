"""A real Redis for the suite: started on a free port (or REDIS_URL when set), flushed per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from relay.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis | None]:
    """The suite's own Redis server (None when the environment names one in TEST_REDIS_URL)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | None) -> str:
    """URL of the test Redis."""
    if redis_server is None:
        return os.environ["TEST_REDIS_URL"]
    return redis_server.url


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on a freshly flushed database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def redis_client(redis_sync: redis.Redis, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on a freshly flushed database (binary responses)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test alone (not persistent), for tests that break it on purpose:
    stop it, fill it, make it a replica or keep it busy, without disturbing the suite's one."""
    server = EmbeddedRedis(tmp_path / "own-redis", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
