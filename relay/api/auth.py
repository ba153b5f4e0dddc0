"""Bearer-key authentication: each key of RELAY_API_KEYS names one client (a tenant).

Keys are compared in constant time and never logged or echoed. ``require_client`` runs before
every handler of the ``/v1`` controllers, so a request without a valid key is a 401 before its
body is even read; ``provide_client`` hands the handlers the client's name.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Controller, Request
from litestar.exceptions import NotAuthorizedException

from relay.settings import Settings

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="intuned-relay"'}


def _refuse(detail: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail, headers=_CHALLENGE)


def client_for(authorization: str | None, settings: Settings) -> str:
    """The client whose key is in ``Authorization: Bearer <key>``; 401 otherwise."""
    if not authorization:
        raise _refuse("missing Authorization: Bearer <key> header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _refuse("Authorization must be: Bearer <key>")
    found: str | None = None
    presented = token.encode()
    for key, client in settings.api_keys.items():
        # Every key is compared, so the time taken does not tell which one came close.
        if hmac.compare_digest(key.encode(), presented):
            found = client
    if found is None:
        raise _refuse("unknown API key")
    return found


async def require_client(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook: 401 unless the request carries a valid key (runs before
    the body is parsed).

    A hook rather than a guard: Litestar hands every guard its own ``copy()`` of the route
    handler on every request, a hook gets the request alone (less CPU per request). A coroutine,
    so Litestar calls it on the event loop (a plain function would be sent to a worker thread on
    every request); it does no I/O.
    """
    settings: Settings = request.app.state.settings
    client_for(request.headers.get("authorization"), settings)


async def provide_client(request: Request[Any, Any, Any]) -> str:
    """Litestar dependency: the authenticated client name."""
    settings: Settings = request.app.state.settings
    return client_for(request.headers.get("authorization"), settings)


class ClientController(Controller):
    """Base of the ``/v1`` controllers: every handler needs a client's key (``require_client``),
    documented as bearer authentication."""

    before_request = staticmethod(require_client)
    security = [{"bearer": []}]
