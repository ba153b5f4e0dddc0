"""Bearer-key authentication: each key of RELAY_API_KEYS names one client (a tenant).

Keys are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from relay.settings import Settings


def client_for(authorization: str | None, settings: Settings) -> str:
    """The client whose key is in ``Authorization: Bearer <key>``; 401 otherwise."""
    if not authorization:
        raise NotAuthorizedException("missing Authorization: Bearer <key> header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("Authorization must be: Bearer <key>")
    found: str | None = None
    for key, client in settings.api_keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            found = client
    if found is None:
        raise NotAuthorizedException("unknown API key")
    return found


async def provide_client(request: Request[Any, Any, Any]) -> str:
    """Litestar dependency: the authenticated client name."""
    settings: Settings = request.app.state.settings
    return client_for(request.headers.get("authorization"), settings)
