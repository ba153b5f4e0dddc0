"""The API enqueues arq jobs with one Lua script instead of ``ArqRedis.enqueue_job``.

These tests pin that the script writes what arq itself writes, so an arq upgrade that changes
its storage format fails here instead of silently delaying every first poll.
"""

from __future__ import annotations

import msgspec
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import deserialize_job, job_key_prefix
from redis.asyncio import Redis

from relay.api.routes.subscriptions import enqueue
from workers.runner import QUEUE_NAME


@pytest.fixture
async def arq_pool(redis_client: Redis, redis_url: str):  # type: ignore[no-untyped-def]
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        default_queue_name=QUEUE_NAME,
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
    )
    yield pool
    await pool.aclose()


async def test_script_writes_what_arq_enqueue_job_writes(arq_pool, redis_client: Redis) -> None:  # type: ignore[no-untyped-def]
    await arq_pool.enqueue_job("poll_now", "rk-arq", _job_id="poll:rk-arq")
    await enqueue(arq_pool, "poll_now", "rk-ours", "poll:rk-ours")
    theirs = await redis_client.get(f"{job_key_prefix}poll:rk-arq")
    ours = await redis_client.get(f"{job_key_prefix}poll:rk-ours")
    assert theirs is not None
    assert ours is not None
    a = deserialize_job(theirs, deserializer=msgspec.msgpack.decode)
    b = deserialize_job(ours, deserializer=msgspec.msgpack.decode)
    assert (a.function, a.kwargs, a.job_try) == (b.function, b.kwargs, b.job_try)
    assert list(b.args) == ["rk-ours"]
    # Same raw shape (same msgpack map keys), same queue, comparable expiry.
    assert sorted(msgspec.msgpack.decode(theirs)) == sorted(msgspec.msgpack.decode(ours))
    queued = dict(await redis_client.zrange(QUEUE_NAME, 0, -1, withscores=True))
    assert {b"poll:rk-arq", b"poll:rk-ours"} <= set(queued)
    ttl_a = await redis_client.pttl(f"{job_key_prefix}poll:rk-arq")
    ttl_b = await redis_client.pttl(f"{job_key_prefix}poll:rk-ours")
    assert abs(ttl_a - ttl_b) < 60_000


async def test_script_deduplicates_like_arq(arq_pool, redis_client: Redis) -> None:  # type: ignore[no-untyped-def]
    await enqueue(arq_pool, "poll_now", "rk", "poll:rk")
    first = await redis_client.get(f"{job_key_prefix}poll:rk")
    await enqueue(arq_pool, "poll_now", "rk", "poll:rk")
    assert await redis_client.get(f"{job_key_prefix}poll:rk") == first
    assert await arq_pool.enqueue_job("poll_now", "rk", _job_id="poll:rk") is None
    assert await redis_client.zcard(QUEUE_NAME) == 1
