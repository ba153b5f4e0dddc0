"""The API's error responses: the one place every error body is rendered, and described.

Every error body is ``ErrorOut`` (``{statusCode, detail, extra?}``) made by ``error_response``.
``EXCEPTION_HANDLERS`` maps what handlers raise (the tree of ``relay.errors``), what redis-py
raises (always a 503 with ``Retry-After``, never a 500), and Litestar's own HTTP errors onto it.
Handlers list the errors they can answer with ``errors(...)`` for the OpenAPI document. Input
errors that Litestar raises while decoding a request get a ``detail`` naming the field and the
problem, not just "Validation failed". This module does no I/O beyond logging.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    SerializationException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError

from relay.api.schemas import ErrorOut
from relay.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RelayError,
    Unavailable,
    error_body,
    unavailable,
)

log = structlog.get_logger("relay.api")

_DESCRIPTIONS: Mapping[int, str] = {
    400: "Malformed input: `detail` says which field and why (`extra` lists every problem)",
    401: "Missing or unknown API key (`Authorization: Bearer <key>`)",
    404: "No such resource among this client's (another client's is also not found)",
    405: "This path does not take that method: the `Allow` header lists the ones it takes",
    409: "Valid, but not in the resource's current state",
    413: "The request body is larger than the API accepts",
    429: "A limit is reached: `detail` names it; nothing was written; `Retry-After` when known",
    503: "Redis is unavailable, full, read-only or busy: retry after `Retry-After` seconds",
}
# Status codes of the relay's own errors (the tree of relay.errors).
_STATUS: tuple[tuple[type[RelayError], int], ...] = (
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (QuotaExceeded, 429),
    (Unavailable, 503),
)


def status_of(exc: RelayError) -> int | None:
    """The HTTP status of a relay error (None: it is not an answer, but a bug: a 500)."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), None)


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses=`` entries for the given error status codes, all with ``ErrorOut``."""
    return {
        code: ResponseSpec(
            data_container=ErrorOut, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }


def error_response(
    status: int,
    detail: str,
    *,
    extra: object = None,
    headers: Mapping[str, str] | None = None,
) -> Response[dict[str, object]]:
    """The one error response: ``error_body`` (``{"statusCode", "detail", "extra"?}``) as JSON."""
    body = error_body(status, detail, extra=extra) if extra else error_body(status, detail)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def answer_of(
    exc: RelayError, path: str, logger: Any = log
) -> tuple[int, dict[str, str] | None] | None:
    """A relay error's HTTP status and headers (``Retry-After`` when it says when), a storage
    outage logged on ``logger``; None when it is not an answer but a bug (a 500). The API and
    the console render the answer each in their own body."""
    status = status_of(exc)
    if status is None:
        return None
    if isinstance(exc, Unavailable):
        logger.warning("storage_unavailable", cause=exc.cause, path=path)
    retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return status, retry


def relay_error(request: Request[Any, Any, Any], exc: RelayError) -> Response[dict[str, object]]:
    """Render a relay error by its class; one that is not an HTTP answer is a logged 500."""
    answer = answer_of(exc, request.url.path)
    if answer is None:
        return unexpected_error(request, exc)
    status, headers = answer
    return error_response(status, str(exc), extra=exc.extra, headers=headers)


def redis_error(request: Request[Any, Any, Any], exc: RedisError) -> Response[dict[str, object]]:
    """Any redis-py error on any route: 503 with ``Retry-After`` (see ``unavailable``)."""
    answer = unavailable(exc)
    if answer.cause == "error":  # not an availability condition: say what it was in the log
        log.error("storage_error", error=repr(exc), path=request.url.path, exc_info=exc)
    return relay_error(request, answer)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    """Litestar's own errors (401, 404 of unknown paths, 405, 413, ...) in the same shape."""
    extra = exc.extra if isinstance(exc, ValidationException) else None
    return error_response(exc.status_code, exc.detail or "error", extra=extra, headers=exc.headers)


def unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """A bug: logged with its traceback; the client learns nothing of the internals."""
    log.error("unhandled_error", error=repr(exc), exc_info=exc)
    return error_response(500, "internal error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    RelayError: relay_error,
    RedisError: redis_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}


def _describe(problem: Any, rules: Mapping[str, str]) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    message = str(problem.get("message", "invalid value"))
    key = problem.get("key")
    if not key or key == "data":  # the whole body: msgspec's message names the field itself
        return f"request body: {message}"
    if key in rules and "matching regex" in message:
        message = rules[key]  # "Expected `str` matching regex '^(?!...' helps nobody
    return f"{key}: {message}"


def validation_handler(
    aliases: Mapping[str, str] | None = None, rules: Mapping[str, str] | None = None
) -> Callable[[Request[Any, Any, Any], ValidationException], Response[dict[str, object]]]:
    """An exception handler turning Litestar's ValidationException into a readable 400.

    ``aliases`` maps Python parameter names to their wire names (``state_`` -> ``state``);
    ``rules`` says in words what a field's pattern requires.
    """
    names = dict(aliases or {})
    said = dict(rules or {})

    def handle(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, object]]:
        problems = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
        for problem in problems:
            if isinstance(problem, dict) and problem.get("key") in names:
                problem["key"] = names[problem["key"]]
        parts = [_describe(p, said) for p in problems]
        detail = "invalid request: " + "; ".join(parts) if parts else exc.detail
        return error_response(exc.status_code, detail, extra=problems)

    return handle


def body_error_handler(
    _: Request[Any, Any, Any], exc: ClientException
) -> Response[dict[str, object]]:
    """Say that an undecodable body is not valid JSON (Litestar passes on msgspec's bare words).

    Other client errors keep their own ``detail``.
    """
    detail = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        detail = f"request body is not valid JSON: {detail}"
    return error_response(exc.status_code, detail, extra=exc.extra, headers=exc.headers)


def undecodable_body(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """msgspec raises these two (not a DecodeError) while Litestar decodes a body, before any
    handler runs: JSON nested too deeply, and a string that is not UTF-8."""
    why = "it is nested too deeply" if isinstance(exc, RecursionError) else "it is not UTF-8"
    return error_response(400, f"request body is not valid JSON: {why}")
