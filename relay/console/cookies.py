"""The console's cookies are Secure behind https (contract §8), and only there.

``RELAY_CONSOLE_SECURE_COOKIE=auto`` (the default) runs each console request through one of two
copies of the session and CSRF middleware: the copy that marks its cookies Secure when the
request came over https (its own scheme, or ``X-Forwarded-Proto: https`` from the proxy that ends
TLS in front of the relay), the other copy otherwise. A Secure cookie set over plain http is
dropped by every client but a browser on localhost, and then no console form can be posted.
``true`` and ``false`` pick one copy for every request.

The header is trusted as it comes: the only thing it decides is whether the cookies set for that
very request carry Secure. This module must never read, write or log a cookie's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

_FORWARDED_PROTO = b"x-forwarded-proto"


def over_https(scope: Scope) -> bool:
    """Whether a request came over https: its scheme, or the first ``X-Forwarded-Proto``."""
    if scope.get("scheme") == "https":
        return True
    for name, value in scope.get("headers", ()):
        if name == _FORWARDED_PROTO:
            return value.split(b",", 1)[0].strip().lower() == b"https"
    return False


class BySchemeMiddleware:
    """ASGI middleware: the request goes through the ``secure`` layers when it came over https,
    through the ``plain`` ones otherwise (each a list of middleware, outermost first)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secure: Sequence[DefineMiddleware],
        plain: Sequence[DefineMiddleware],
    ) -> None:
        self._secure = _wrapped(app, secure)
        self._plain = _wrapped(app, plain)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._secure if over_https(scope) else self._plain
        await handler(scope, receive, send)


def _wrapped(app: ASGIApp, layers: Sequence[DefineMiddleware]) -> ASGIApp:
    for layer in reversed(layers):
        app = layer(app)
    return app


def cookie_middleware(
    secure_setting: bool | None, layers: Callable[[bool], list[DefineMiddleware]]
) -> list[DefineMiddleware]:
    """The console router's middleware: ``layers(secure)`` as set, or chosen per request."""
    if secure_setting is not None:
        return layers(secure_setting)
    return [DefineMiddleware(BySchemeMiddleware, secure=layers(True), plain=layers(False))]
