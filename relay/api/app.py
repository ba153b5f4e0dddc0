"""``create_app(settings)``: the Litestar application, its lifespan, errors and OpenAPI.

Redis (``relay.api.redis_pool``: every wait bounded) and arq's enqueuing client on the same
pool are opened in the lifespan and closed with it, with the start-up checks
(``relay.readiness``) that ``/readyz`` reports; nothing is created at import time. Every error
is rendered by ``relay.api.responses`` (one body shape; Redis errors are 503s, never 500s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from relay.api.allow import fix_allow_header
from relay.api.auth import provide_client
from relay.api.deps import provide_arq, provide_settings, provide_store
from relay.api.redis_pool import arq_on, open_redis
from relay.api.request_metrics import RequestMetrics
from relay.api.responses import EXCEPTION_HANDLERS
from relay.api.routes.controls import OperationalWebhookController, TestDeliveryController
from relay.api.routes.health import healthz, readyz
from relay.api.routes.metrics import MetricsController
from relay.api.routes.runs import RunController
from relay.api.routes.secrets import SecretController
from relay.api.routes.starts import StartController, intuned_push
from relay.api.routes.subscriptions import SubscriptionController
from relay.console import console_handlers, register_stores, template_config
from relay.intuned.client import IntunedClient
from relay.readiness import StartupChecks
from relay.services.starts import INGRESS_SECRET_HEADER
from relay.settings import Settings
from relay.store import Stores
from relay.webhooks.sender import WebhookSender
from workers.runner import QUEUE_NAME


def create_app(settings: Settings) -> Litestar:
    """The relay's API, configured by ``settings``."""
    assert settings.redis_url is not None
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = open_redis(redis_url, settings.redis_timeout)
        arq = arq_on(redis, QUEUE_NAME)
        app.state.redis = redis
        app.state.arq = arq
        app.state.store = Stores.open(redis, settings)
        register_stores(app, redis)
        checks = await StartupChecks.start(settings, redis, reprobe=True)
        app.state.readiness = checks.readiness
        # The transport of POST /v1/test-deliveries: the workers' sender, a small pool.
        app.state.test_sender = WebhookSender(
            timeout=settings.delivery_timeout,
            policy=settings.callback_policy,
            max_connections=8,
            lookup=app.state.get("callback_lookup"),
            dns_timeout=settings.dns_timeout,
        )
        await app.state.test_sender.start()
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
            await app.state.test_sender.aclose()
            await checks.aclose()
            await arq.aclose()
            await redis.aclose()

    metrics = RequestMetrics(prefix="relay_api", app_name="relay_api")
    return Litestar(
        route_handlers=[
            SubscriptionController,
            RunController,
            SecretController,
            TestDeliveryController,
            OperationalWebhookController,
            StartController,
            intuned_push,
            healthz,
            readyz,
            MetricsController,
            *console_handlers(settings),
        ],
        template_config=template_config(),
        lifespan=[lifespan],
        state=State({"settings": settings, "request_metrics": metrics}),
        dependencies={
            "client": Provide(provide_client),
            "store": Provide(provide_store),
            "settings": Provide(provide_settings),
            "arq": Provide(provide_arq),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[fix_allow_header, metrics.middleware],
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
