"""The console's error pages: every failure under /console answers HTML, never JSON.

A page request without a session is redirected to the sign-in form; an action without one is a
401 page. Another client's subscription is the same 404 page as a missing one. Redis unavailable
is the 503 page, also where no exception handler sees it: ``storage_outage_page`` wraps the
session middleware, which loads the session before any handler and stores it while the
response starts. This module must never show an exception's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_303_SEE_OTHER,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import ASGIApp, ExceptionHandlersMap, Message, Receive, Scope, Send
from redis.exceptions import RedisError

from relay.api.responses import answer_of
from relay.console.auth import signed_in_client
from relay.errors import RelayError, unavailable

log = structlog.get_logger("relay.console")

_TITLES = {
    400: "That request is not valid",
    401: "Sign in first",
    403: "That form has expired",
    404: "Not found",
    409: "Not possible now",
    429: "Too many requests",
    503: "Storage is unavailable",
}


def error_page(
    status: int, detail: str, headers: dict[str, str] | None = None, client: str | None = None
) -> Template:
    """The error page for ``status`` with a readable ``detail`` (the menu when signed in)."""
    return Template(
        template_name="error.html",
        context={
            "status": status,
            "title": _TITLES.get(status, "Something went wrong"),
            "detail": detail,
            "client": client,
            "nav": None,
            "notice": None,
        },
        status_code=status,
        headers=headers,
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotAuthorizedException) and request.method in ("GET", "HEAD"):
        return Redirect("/console/sign-in", status_code=HTTP_303_SEE_OTHER)
    detail = exc.detail or _TITLES.get(exc.status_code, "error")
    if exc.status_code == 403:
        detail = "The form's security token did not match. Reload the page and try again."
    return error_page(exc.status_code, detail, exc.headers, signed_in_client(request))


def _relay_error(request: Request[Any, Any, Any], exc: RelayError) -> Response[Any]:
    answer = answer_of(exc, request.url.path, log)
    if answer is None:
        return _unexpected(request, exc)
    status, headers = answer
    return error_page(status, str(exc), headers, signed_in_client(request))


def _redis_error(request: Request[Any, Any, Any], exc: RedisError) -> Response[Any]:
    return _relay_error(request, unavailable(exc))


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return error_page(HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_error,
    RelayError: _relay_error,
    RedisError: _redis_error,
    Exception: _unexpected,
}


def _redis_cause(exc: BaseException) -> RedisError | None:
    """The Redis error ``exc`` is, or was raised from (Litestar re-raises an error that follows
    the start of a response as a LitestarException ``from`` it)."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, RedisError):
        seen = seen.__cause__
    return seen


def storage_outage_page(app: ASGIApp, headers: Sequence[ResponseHeader] = ()) -> ASGIApp:
    """ASGI middleware outside the console's session middleware: a Redis error while a session
    is loaded or stored is the 503 page (with ``headers``) instead of Litestar's bare 500, as long
    as nothing of the response was sent. The page shows no client: the session may not exist."""
    fixed = {header.name: header.value or "" for header in headers}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        sent = False

        async def watched(message: Message) -> None:
            nonlocal sent
            sent = True
            await send(message)

        try:
            await app(scope, receive, watched)
        except Exception as exc:
            cause = _redis_cause(exc)
            if cause is None or sent:
                raise
            request: Request[Any, Any, Any] = Request(scope, receive)
            refusal = unavailable(cause)
            answer = answer_of(refusal, request.url.path, log)
            assert answer is not None  # Unavailable is always an answer (a 503)
            status, retry = answer
            page = error_page(status, str(refusal), {**fixed, **(retry or {})})
            await page.to_asgi_response(None, request)(scope, receive, send)

    return middleware
