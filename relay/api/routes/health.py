"""``/healthz`` (the process runs) and ``/readyz`` (Redis answers)."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE


@get("/healthz", tags=["health"], summary="200 while the process runs", exclude_from_auth=True)
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@get("/readyz", tags=["health"], summary="200 when Redis answers, 503 otherwise")
async def readyz(state: State) -> Response[dict[str, str]]:
    """Readiness: a Redis PING within one second."""
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=1.0)
    except Exception as exc:  # any failure to reach Redis means not ready
        return Response(
            {"status": "unavailable", "detail": f"redis: {type(exc).__name__}"},
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
        )
    return Response({"status": "ok"}, status_code=HTTP_200_OK)
