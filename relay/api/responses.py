"""The API's error responses: how they are described in OpenAPI and how input errors read.

Every error body is ``ErrorOut`` (``{status_code, detail, extra?}``, the shape ``app.py`` gives
every HTTP error). Handlers list the errors they can answer with ``errors(...)``. Input errors that
Litestar raises while decoding a request get a ``detail`` naming the field and the problem, not
just "Validation failed". This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from relay.api.schemas import ErrorOut

_DESCRIPTIONS: Mapping[int, str] = {
    400: "Malformed input: `detail` says which field and why (`extra` lists every problem)",
    401: "Missing or unknown API key (`Authorization: Bearer <key>`)",
    404: "No such resource among this client's (another client's is also not found)",
    409: "Valid, but not in the resource's current state",
    429: "A per-client limit is reached: `detail` names it; `Retry-After` says when to retry",
    503: "Redis is unavailable; retry shortly",
}


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses=`` entries for the given error status codes, all with ``ErrorOut``."""
    return {
        code: ResponseSpec(
            data_container=ErrorOut, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
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
        body: dict[str, object] = {"status_code": exc.status_code, "detail": detail}
        if problems:
            body["extra"] = problems
        return Response(body, status_code=exc.status_code, media_type=MediaType.JSON)

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
    body: dict[str, object] = {"status_code": exc.status_code, "detail": detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(
        body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers
    )
