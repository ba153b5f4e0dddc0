"""The worker's liveness: the per-host key arq refreshes, and ``relay worker --check`` reading it.

Kept apart from ``workers.runner`` so the check (a Kubernetes liveness probe, run every few
seconds) imports only a Redis client, not the whole worker.
"""

from __future__ import annotations

import socket

from redis.asyncio import Redis
from redis.exceptions import RedisError

HEALTH_CHECK_PREFIX = "relay:arq:health-check"
HEALTH_CHECK_INTERVAL = 10


def health_check_key(host: str | None = None) -> str:
    """The key a worker on ``host`` (default: this one) refreshes while it is healthy.

    Per host, so a Kubernetes liveness probe (``relay worker --check``) judges its own pod's
    worker, not whichever worker of the deployment wrote last.
    """
    return f"{HEALTH_CHECK_PREFIX}:{host or socket.gethostname()}"


async def worker_health(redis_url: str) -> int:
    """``relay worker --check``: 0 when this host's worker wrote its health key recently."""
    redis = Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        info = await redis.get(health_check_key())
    except (RedisError, OSError) as exc:  # unreachable Redis: unhealthy
        print(f"relay worker: health check failed: {type(exc).__name__}")
        return 1
    finally:
        await redis.aclose()
    if info is None:
        print(
            "relay worker: no worker on this host reported health in the last "
            f"{HEALTH_CHECK_INTERVAL + 1} s"
        )
        return 1
    print(f"relay worker: {info.decode()}")
    return 0
