"""Baseline of the registration bench: a bare Litestar app on the same server as ``relay api``.

One route, ``POST /v1/subscriptions``: decode the body into the relay's own
``SubscriptionCreate`` Struct, write it to Redis with one ``SET``, answer 201 with a small JSON.
No auth, no SSRF check, no idempotency, no enqueue, no read-back: the floor a Litestar + Redis
service on this machine cannot go below. Served by granian exactly as ``relay api`` is
(``relay.cli.serve_api``: ASGI, uvloop, one worker, no access log).

    python -m bench.bare_app --port P --redis redis://127.0.0.1:R/0
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar, Request, Response, post
from redis.asyncio import Redis

from relay.api.schemas import SubscriptionCreate


def create() -> Litestar:
    """The bare app (granian factory); Redis URL from BENCH_REDIS_URL."""
    url = os.environ["BENCH_REDIS_URL"]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.redis = Redis.from_url(url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    @post("/v1/subscriptions", status_code=201)
    async def create_sub(request: Request[object, object, object]) -> Response[bytes]:
        sub = msgspec.json.decode(await request.body(), type=SubscriptionCreate)
        await request.app.state.redis.set(
            f"bare:{sub.project_name}:{sub.run_id}", msgspec.json.encode(sub)
        )
        return Response(b'{"ok":true}', status_code=201, media_type="application/json")

    return Litestar(route_handlers=[create_sub], lifespan=[lifespan], debug=False)


def main() -> None:
    """Serve with granian, configured like ``relay api``."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    os.environ["BENCH_REDIS_URL"] = args.redis
    Granian(
        "bench.bare_app:create",
        factory=True,
        address="127.0.0.1",
        port=args.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
