"""JSON request bodies of the ``/v1`` routes: their Content-Type, that they are not empty, and
that they decode in msgspec's strict mode.

Litestar converts a handler's ``data`` in msgspec's lax mode, which takes the string ``"null"``
for null, ``"true"`` for true, ``"1"`` for 1 and a number for a date-time. The relay is strict
with its own input (malformed input is a 400, contract §3): a body that only lax mode would
accept is a 400 here, before the handler, saying what strict decoding found. A body that lax mode
refuses too is left to Litestar, whose 400 names the field
(``relay.api.responses.validation_handler``). This module
must never decide anything about a body's meaning: that is the services' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException
from litestar.params import BodyKwarg

from relay.api.auth import ClientController, require_client
from relay.api.responses import body_error_handler, undecodable_body
from relay.errors import InvalidInput

_JSON_TYPES = ("application/json",)
# The body Struct forbids unknown fields; say so in the OpenAPI document, too.
STRICT_JSON_BODY = BodyKwarg(
    media_type=RequestEncodingType.JSON, schema_extra={"additionalProperties": False}
)
_EXCEPTION_HANDLERS: Final[Mapping[type[Exception], Any]] = {
    RecursionError: undecodable_body,
    UnicodeDecodeError: undecodable_body,
    ClientException: body_error_handler,
}


def json_body_route(data: type[msgspec.Struct] | None = None) -> Mapping[str, Any]:
    """The decorator arguments of a handler that takes a JSON body (``**json_body_route(T)``):
    ``require_client_and_body`` checks the body's Content-Type, that it is not empty and, for
    ``data`` (the handler's body type, which Litestar converts leniently), that it decodes
    strictly; a body that does not decode is a 400 that says why, never a 500. Without ``data``
    the handler reads the raw body and decodes it itself."""
    return {
        "opt": {"json_body": True, "strict_body": data},
        "exception_handlers": dict(_EXCEPTION_HANDLERS),
    }


def refuse_lax_only(raw: bytes, data: type[msgspec.Struct]) -> None:
    """InvalidInput when ``raw`` decodes as ``data`` in lax mode only."""
    try:
        msgspec.json.decode(raw, type=data)
    except msgspec.ValidationError as strict:
        try:
            msgspec.json.decode(raw, type=data, strict=False)
        except msgspec.DecodeError:
            return  # Litestar refuses it as well, naming the field
        raise InvalidInput(f"invalid request: {strict}") from None
    except msgspec.DecodeError:
        return  # not JSON: Litestar's 400 says so


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """The body must be non-empty JSON (a missing Content-Type is read as JSON), strictly of the
    handler's body type when it has one."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type and media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        raise InvalidInput(f"Content-Type must be application/json, not {media_type!r}")
    raw = await request.body()
    if not raw.strip():
        raise InvalidInput(
            "the request body is empty: send a JSON object with projectName, runId, callbackUrl"
        )
    data = request.route_handler.opt.get("strict_body")
    if data is not None:
        refuse_lax_only(raw, data)


async def require_client_and_body(request: Request[Any, Any, Any]) -> None:
    """The controller's ``before_request`` hook: ``require_client``, then ``require_json_body``
    for the handlers that take a JSON body (``json_body_route``). Litestar uses one
    hook per handler (the nearest layer's), so this one does both."""
    await require_client(request)
    if request.route_handler.opt.get("json_body"):
        await require_json_body(request)


class ClientBodyController(ClientController):
    """Base of the ``/v1`` controllers with JSON bodies: ``require_client_and_body`` runs
    before their handlers."""

    before_request = staticmethod(require_client_and_body)
