"""Make ``OPTIONS`` answer an ``Allow`` header with every method of the path.

Litestar 2's automatic OPTIONS handler lists only the methods of the first handler registered
on a path (litestar-org/litestar#4169, fixed in Litestar 3 only): ``OPTIONS /v1/subscriptions``
said ``OPTIONS, POST`` without ``GET``. This middleware rewrites the header of OPTIONS answers
from the application's routes (public ``Litestar.routes``). Drop it when moving to Litestar 3.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


def allowed_methods(app: Litestar, path_template: str) -> str | None:
    """``Allow`` for the route whose template is ``path_template`` (None: no such route)."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path_format == path_template:
            methods.update(route.methods)
    return ", ".join(sorted(methods)) if methods else None


def fix_allow_header(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: OPTIONS answers carry the path's full ``Allow`` list."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        allow = allowed_methods(Litestar.from_scope(scope), scope.get("path_template", ""))

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and allow is not None:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await app(scope, receive, send_with_allow)

    return middleware
