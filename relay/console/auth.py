"""Console sign-in: an API key becomes a server-side session; sign-out deletes it.

The session lives in Redis through Litestar's server-side sessions (a Litestar ``RedisStore``,
its own namespace) and holds only the client's name and a fingerprint of the key used; every
request checks that fingerprint against the keys configured now, so removing a key from
RELAY_API_KEYS ends its sessions. Each request renews the session (sliding expiry). Forms are
protected by Litestar's CSRF middleware, scoped to ``/console`` (the bearer-key ``/v1`` API never
sees it). Failed sign-ins are counted per client address in a fixed window; past the limit the
form answers 429. This module must never log, store or echo an API key.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.base import Store as KeyValueStore

from relay.settings import Settings
from relay.store import keys

SESSION_COOKIE: Final = "relay_console"
CSRF_COOKIE: Final = "relay_console_csrf"
SESSION_STORE: Final = "relay-console-sessions"
SIGNIN_STORE: Final = "relay-console-signin"
# Redis key prefixes of the two Litestar stores (named with every other key in relay.store.keys).
SESSION_NAMESPACE: Final = keys.CONSOLE_SESSIONS
SIGNIN_NAMESPACE: Final = keys.CONSOLE_SIGN_INS
SIGNIN_WINDOW: Final = 300  # seconds


def fingerprint(key: str) -> str:
    """A one-way fingerprint of an API key (what a session remembers instead of the key)."""
    return hashlib.sha256(b"relay-console\x00" + key.encode()).hexdigest()


def client_for_key(presented: str, settings: Settings) -> str | None:
    """The client whose key ``presented`` is (compared in constant time), or None."""
    found: str | None = None
    for key, client in settings.api_keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = client
    return found


def session_config(settings: Settings, *, secure: bool) -> ServerSideSessionConfig:
    """Server-side sessions: HttpOnly, SameSite=Strict, sliding; Secure as asked
    (``relay.console.cookies`` asks per request by default)."""
    return ServerSideSessionConfig(
        key=SESSION_COOKIE,
        max_age=int(settings.console_session_ttl),
        renew_on_access=True,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure,
        store=SESSION_STORE,
    )


def csrf_config(settings: Settings, *, secure: bool) -> CSRFConfig:
    """CSRF tokens for the console's forms; the secret is derived from the configured keys, so
    every API process of one deployment accepts the others' tokens."""
    material = "\x00".join(sorted(settings.api_keys)).encode()
    secret = hmac.new(b"relay-console-csrf", material, hashlib.sha256).hexdigest()
    return CSRFConfig(
        secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_path="/console",
        cookie_secure=secure,
        cookie_httponly=True,
        cookie_samesite="strict",
    )


def signed_in_client(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The client of a live session whose key is still configured, else None."""
    session = connection.scope.get("session")
    if not isinstance(session, dict):
        return None
    client, kf = session.get("client"), session.get("kf")
    if not isinstance(client, str) or not isinstance(kf, str):
        return None
    settings: Settings = connection.app.state.settings
    live = {fingerprint(key): name for key, name in settings.api_keys.items()}
    return client if live.get(kf) == client else None


async def require_session(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard of every console page and action: a live session, else 401 (pages redirect)."""
    if signed_in_client(connection) is None:
        connection.clear_session()  # nothing is stored for an anonymous visitor
        raise NotAuthorizedException("sign in first")


async def provide_console_client(request: Request[Any, Any, Any]) -> str:
    """Dependency: the signed-in client (the guard has passed)."""
    client = signed_in_client(request)
    if client is None:
        raise NotAuthorizedException("sign in first")
    return client


def start_session(request: Request[Any, Any, Any], client: str, key: str) -> None:
    """Sign ``client`` in on this request's session."""
    request.set_session({"client": client, "kf": fingerprint(key)})


class SignInLimiter:
    """Counts failed sign-ins per address in fixed windows of ``SIGNIN_WINDOW`` seconds.

    The count is read and written back (the Litestar store has no increment), so failures sent
    at the same instant may count once each pass: the limit holds to within the concurrency.
    The address is the connection's peer (behind a proxy: the proxy's, unless the server is
    told to trust forwarded headers)."""

    def __init__(self, store: KeyValueStore, limit: int) -> None:
        self._store = store
        self._limit = limit

    @staticmethod
    def _key(address: str, now: float) -> str:
        return f"{address}:{int(now // SIGNIN_WINDOW)}"

    async def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until this address may try again, or None while under the limit."""
        count = await self._store.get(self._key(address, now))
        if count is None or int(count) < self._limit:
            return None
        return SIGNIN_WINDOW - int(now % SIGNIN_WINDOW)

    async def failed(self, address: str, now: float) -> None:
        """Count one failed sign-in from ``address``."""
        key = self._key(address, now)
        count = await self._store.get(key)
        await self._store.set(key, str(int(count or 0) + 1), expires_in=SIGNIN_WINDOW)
