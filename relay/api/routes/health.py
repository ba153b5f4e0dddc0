"""``/healthz`` (the process runs) and ``/readyz`` (Redis answers, plus what the checks found).

``/readyz`` is 503 only when Redis does not answer a PING within a second. Its other fields
(``redisPersistence``, ``redisEvictionPolicy``, ``intunedKey``; see ``relay.readiness``) report
problems an operator must fix but never turn a 200 into a 503.
"""

from __future__ import annotations

import asyncio

import structlog
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.api.schemas import ReadyOut
from relay.errors import unavailable
from relay.readiness import KeyState, Readiness, current_intuned_key, inspect_redis
from relay.store import Stores

log = structlog.get_logger("relay.api")
PING_TIMEOUT_S = 1.0


@get("/healthz", tags=["health"], summary="200 while the process runs", exclude_from_auth=True)
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


async def _refresh(redis: Redis, store: Stores, readiness: Readiness) -> KeyState:
    """Read Redis's settings again (they may be fixed while the relay runs) and the key's
    verdict (the probe's, unless the workers' polls see the key refused now)."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            readiness.redis = await inspect_redis(redis)
            return await current_intuned_key(readiness, store.controls)
    except (RedisError, TimeoutError) as exc:  # keep the last finding; readiness is the PING's
        log.info("redis_settings_unread", error=type(exc).__name__)
        return readiness.intuned_key


def _out(readiness: Readiness, detail: str | None = None, key: KeyState | None = None) -> ReadyOut:
    redis = readiness.redis
    return ReadyOut(
        status="ok" if detail is None else "unavailable",
        redis_persistence=redis.persistence if redis else "unknown",
        redis_eviction_policy=redis.eviction_policy if redis else "unknown",
        intuned_key=key or readiness.intuned_key,
        detail=detail,
    )


@get(
    "/readyz",
    tags=["health"],
    summary="200 when Redis answers, 503 otherwise; with what the start-up checks found",
    responses={
        503: ResponseSpec(
            data_container=ReadyOut,
            description="Redis does not answer; `detail` says how it failed",
            generate_examples=False,
        )
    },
)
async def readyz(state: State) -> Response[ReadyOut]:
    """Readiness: a Redis PING within one second."""
    readiness: Readiness = state.readiness
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await state.redis.ping()
    except (RedisError, TimeoutError) as exc:
        cause = unavailable(exc).cause if isinstance(exc, RedisError) else "timeout"
        return Response(
            _out(readiness, f"redis: {cause}"),
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
        )
    key = await _refresh(state.redis, state.store, readiness)
    return Response(_out(readiness, key=key), status_code=HTTP_200_OK)
