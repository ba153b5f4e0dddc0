"""The operator page at ``/console``: server-rendered HTML for people, on the API's port.

``console_handlers(settings)`` gives the router (sessions and CSRF scoped to it, HTML errors)
and the static files; ``template_config()`` the Jinja environment; ``register_stores(app,
redis)`` the Litestar stores for sessions and sign-in counting (called in the API's lifespan).
This package must never read the relay's Redis keys itself: pages call ``relay.services``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Litestar, Router
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig
from redis.asyncio import Redis

from relay.console import views
from relay.console.auth import (
    SESSION_NAMESPACE,
    SESSION_STORE,
    SIGNIN_NAMESPACE,
    SIGNIN_STORE,
    csrf_config,
    provide_console_client,
    require_session,
    session_config,
)
from relay.console.cookies import cookie_middleware
from relay.console.errors import EXCEPTION_HANDLERS, storage_outage_page
from relay.console.pages import ConsolePages
from relay.console.signin import SignIn
from relay.settings import Settings

HERE = Path(__file__).parent
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value="default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Cache-Control", value="no-store"),
]


def console_handlers(settings: Settings) -> list[Any]:
    """The ``/console`` router and ``/console/static``."""
    signed_in = Router(
        path="/",
        route_handlers=[ConsolePages],
        guards=[require_session],
        dependencies={"client": Provide(provide_console_client)},
    )
    router = Router(
        path="/console",
        route_handlers=[SignIn, signed_in],
        middleware=[
            # Outermost: a Redis error in the session middleware is the 503 page, not a 500.
            DefineMiddleware(storage_outage_page, headers=SECURITY_HEADERS),
            *cookie_middleware(
                settings.console_secure_cookie,
                lambda secure: [
                    session_config(settings, secure=secure).middleware,
                    DefineMiddleware(CSRFMiddleware, config=csrf_config(settings, secure=secure)),
                ],
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        response_headers=SECURITY_HEADERS,
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/console/static", directories=[HERE / "static"], include_in_schema=False
    )
    return [router, static]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja templates of the console (autoescaped, undefined names are errors)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    env.filters.update(
        when=views.when, iso=views.iso, duration=views.duration, excerpt=views.excerpt
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def register_stores(app: Litestar, redis: Redis) -> None:
    """Sessions and sign-in counts in Redis, each under its own key prefix."""
    app.stores.register(SESSION_STORE, RedisStore(redis, namespace=SESSION_NAMESPACE), True)
    app.stores.register(SIGNIN_STORE, RedisStore(redis, namespace=SIGNIN_NAMESPACE), True)
