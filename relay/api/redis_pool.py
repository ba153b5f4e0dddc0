"""The API's one Redis client, shared by the store, the console's sessions and arq's enqueues.

Every wait on Redis is bounded by ``RELAY_REDIS_TIMEOUT``, so a Redis that stops answering is a
503 for each request within about twice that (a timed-out command is tried once more on a new
connection), however many requests wait at once:

- a ``BlockingConnectionPool``: redis-py 5's plain ``ConnectionPool`` connects a new connection
  while holding the pool's lock, so with a stalled Redis concurrent requests queued behind one
  another's connection attempts; this pool connects outside its lock, and waits at most the
  timeout for a free connection (then ``ConnectionError``: a 503);
- no ``health_check_interval``: redis-py 5's asyncio health check pings from inside ``connect``
  and, when that ping times out, reconnects, which pings again (redis/redis-py#2866, #3745): with
  a stalled Redis a request never came back. A dead connection is still noticed: the pool checks
  each connection it hands out, and a failed command is retried once on a new connection;
- arq's enqueues use this pool too: ``arq.create_pool`` sets no socket timeout, so an enqueue
  waited forever.

This module must never be imported by the workers (they open their own client).
"""

from __future__ import annotations

import msgspec
from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, Redis

# Connections the API may hold at once; requests beyond it wait for one (at most the timeout).
MAX_CONNECTIONS = 64
CONNECT_TIMEOUT = 2.0  # seconds, at most; a TCP connect is quick when Redis's host is up


def open_redis(url: str, timeout: float) -> Redis:
    """A client on ``url`` whose every wait (connection, connect, answer) is at most ``timeout``."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=min(CONNECT_TIMEOUT, timeout),
        retry_on_timeout=True,
    )
    return Redis.from_pool(pool)


def arq_on(redis: Redis, queue: str) -> ArqRedis:
    """arq's enqueuing client on ``redis``'s pool, with the codec the workers decode (msgpack)."""
    return ArqRedis(
        redis.connection_pool,
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
        default_queue_name=queue,
    )
