"""``/metrics``: this process's request metrics (``relay.api.request_metrics``) plus
``relay_subscriptions`` read from Redis.

With RELAY_METRICS_TOKEN set it needs ``Authorization: Bearer <token>`` (401 otherwise) and
labels subscriptions by client; without it, it is open and names no client (``relay.metrics``).
"""

from __future__ import annotations

import structlog
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError

from relay.api.request_metrics import RequestMetrics
from relay.errors import unavailable
from relay.metrics import scrape_allowed, subscriptions_by_state
from relay.settings import Settings

log = structlog.get_logger("relay.api")

# Litestar appends "; charset=utf-8" to every text/ media type: give it the type without one.
_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


class MetricsController(PrometheusController):
    """``/metrics``: requests by route and status, and subscriptions by state."""

    path = "/metrics"

    @get(include_in_schema=False)
    async def get(self, state: State, request: Request[object, object, State]) -> Response[bytes]:
        """Prometheus text: this process's registry plus ``relay_subscriptions`` from Redis."""
        settings: Settings = state.settings
        token = settings.metrics_token
        if not scrape_allowed(request.headers.get("authorization"), token):
            raise NotAuthorizedException(
                "/metrics needs Authorization: Bearer <RELAY_METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        request_metrics: RequestMetrics = state.request_metrics
        body = generate_latest(REGISTRY) + generate_latest(request_metrics.registry)
        clients = sorted(set(settings.api_keys.values()))
        try:
            counts = {
                client: await state.store.subscriptions.count_states(client) for client in clients
            }
        except RedisError as exc:  # the process's own metrics are still worth a scrape
            log.warning("metrics_without_subscriptions", cause=unavailable(exc).cause)
        else:
            body += subscriptions_by_state(counts, by_client=bool(token))
        return Response(body, media_type=_MEDIA_TYPE)
