"""``create_app(settings)``: the Litestar application, its lifespan, errors and OpenAPI.

Redis and the arq pool are opened in the lifespan and closed with it; nothing is created at
import time. Domain errors are translated into JSON ``{"status_code", "detail"}`` bodies here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog
from arq import create_pool
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.api.auth import provide_client
from relay.api.deps import provide_arq, provide_settings, provide_store
from relay.api.routes.health import healthz, readyz
from relay.api.routes.runs import RunController
from relay.api.routes.secrets import SecretController
from relay.api.routes.starts import StartController, intuned_push
from relay.api.routes.subscriptions import SubscriptionController
from relay.errors import Conflict, InvalidInput, NotFound, RelayError
from relay.intuned.client import IntunedClient
from relay.metrics import subscriptions_by_state
from relay.services.starts import INGRESS_SECRET_HEADER
from relay.settings import Settings
from relay.store import Stores
from workers.runner import QUEUE_NAME, arq_redis_settings

log = structlog.get_logger("relay.api")


def _error(status: int, detail: str, extra: object = None) -> Response[dict[str, object]]:
    body: dict[str, object] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)


def _relay_error(_: Request[Any, Any, Any], exc: RelayError) -> Response[dict[str, object]]:
    if isinstance(exc, InvalidInput):
        return _error(400, str(exc))
    if isinstance(exc, NotFound):
        return _error(404, str(exc))
    if isinstance(exc, Conflict):
        return _error(409, str(exc))
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    extra = exc.extra if isinstance(exc, ValidationException) else None
    response = _error(exc.status_code, exc.detail or "error", extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _redis_down(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.warning("redis_unavailable", error=type(exc).__name__)
    return _error(HTTP_503_SERVICE_UNAVAILABLE, "storage is unavailable; retry shortly")


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


class MetricsController(PrometheusController):
    """``/metrics``: requests by route and status, and subscriptions by client and state."""

    path = "/metrics"

    @get(include_in_schema=False)
    async def get(self, state: State) -> Response[bytes]:
        """Prometheus text: this process's registry plus ``relay_subscriptions`` from Redis."""
        body = generate_latest(REGISTRY)
        settings: Settings = state.settings
        clients = sorted(set(settings.api_keys.values()))
        try:
            counts = {
                client: await state.store.subscriptions.count_states(client) for client in clients
            }
        except (RedisConnectionError, RedisTimeoutError):
            log.warning("metrics_without_subscriptions", reason="redis unavailable")
        else:
            body += subscriptions_by_state(counts)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings) -> Litestar:
    """The relay's API, configured by ``settings``."""
    assert settings.redis_url is not None
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = Redis.from_url(
            redis_url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=15,
            retry_on_timeout=True,
        )
        # The worker decodes jobs with msgpack (workers.runner): enqueue with the same codec.
        arq = await create_pool(
            arq_redis_settings(settings),
            default_queue_name=QUEUE_NAME,
            job_serializer=msgspec.msgpack.encode,
            job_deserializer=msgspec.msgpack.decode,
        )
        app.state.redis = redis
        app.state.arq = arq
        app.state.store = Stores.open(redis, settings)
        # Only POST /v1/runs calls Intuned from the API (one start per request).
        app.state.intuned = IntunedClient(
            settings.intuned_api_base_url,
            settings.intuned_workspace_id,
            settings.intuned_api_key,
            timeout=settings.intuned_timeout,
            max_connections=16,
        )
        try:
            yield
        finally:
            await app.state.intuned.aclose()
            await arq.aclose()
            await redis.aclose()

    prometheus = PrometheusConfig(app_name="relay_api", prefix="relay_api", group_path=True)
    return Litestar(
        route_handlers=[
            SubscriptionController,
            RunController,
            SecretController,
            StartController,
            intuned_push,
            healthz,
            readyz,
            MetricsController,
        ],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={
            "client": Provide(provide_client),
            "store": Provide(provide_store),
            "settings": Provide(provide_settings),
            "arq": Provide(provide_arq),
        },
        exception_handlers={
            RelayError: _relay_error,
            HTTPException: _http_error,
            RedisConnectionError: _redis_down,
            RedisTimeoutError: _redis_down,
            Exception: _unexpected,
        },
        middleware=[prometheus.middleware],
        openapi_config=OpenAPIConfig(
            title="intuned-relay",
            version="1",
            description="Register Intuned runs and callback URLs; receive signed webhooks.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="RELAY_API_KEYS"
                    ),
                    # The push ingress: the per-run token in the path plus this header.
                    "ingressSecret": SecurityScheme(
                        type="apiKey",
                        name=INGRESS_SECRET_HEADER,
                        security_scheme_in="header",
                        description="the per-run secret the relay gave Intuned with the sink",
                    ),
                }
            ),
        ),
        logging_config=None,  # the process entry point configured logging (relay.observability)
        debug=False,
    )
