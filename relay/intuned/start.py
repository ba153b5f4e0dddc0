"""Typed outcomes of starting a run (``POST …/run/start``) and the pure rules that pick one.

Intuned documents no idempotency key for start (intuned-api.md §9), so what matters is whether
a retry could create a second paid run:

==========================================  ===============================================
2xx with ``{runId, status}``                ``Started`` (any 2xx: the spec says 201)
4xx (any: 400, 401, 404, 409, 422, 429...)  ``Refused``: Intuned's status and body, as sent
5xx                                         ``Unavailable``: safe to retry
connection failed before the request left   ``Unavailable``: refused, DNS, connect timeout
timeout or drop after the request left      ``Unknown``: a run may exist; never retry
2xx without a run id, 1xx/3xx               ``Unknown``
==========================================  ===============================================

This module does no I/O; ``IntunedClient.start`` sends the request and calls these.
"""

from __future__ import annotations

from typing import Final

import aiohttp
import msgspec

from relay.intuned.models import START_DECODER

_DETAIL_CHARS: Final = 300


class Started(msgspec.Struct, frozen=True):
    """A 2xx: the run exists. ``raw`` is Intuned's body byte for byte."""

    run_id: str
    status: str
    raw: bytes


class Refused(msgspec.Struct, frozen=True):
    """A 4xx: nothing was started; ``body`` is Intuned's error body byte for byte;
    ``retry_after``: seconds, from a 429's usable ``Retry-After``."""

    status_code: int
    body: bytes
    retry_after: float | None = None


class Unavailable(msgspec.Struct, frozen=True):
    """A 5xx, or no connection before the request was sent: nothing started, safe to retry."""

    status_code: int | None
    detail: str


class Unknown(msgspec.Struct, frozen=True):
    """The request may have reached Intuned and started a run: must not be retried."""

    detail: str
    status_code: int | None = None


StartOutcome = Started | Refused | Unavailable | Unknown


def classify_start_answer(
    status: int, body: bytes, retry_after: float | None = None
) -> StartOutcome:
    """The outcome of an answer to start (body already read; ``retry_after``: the seconds its
    ``Retry-After`` asks for, kept for a 429)."""
    if 200 <= status < 300:
        try:
            answer = START_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            detail = f"HTTP {status} body is not a start answer: {exc}"[:_DETAIL_CHARS]
            return Unknown(detail=detail, status_code=status)
        return Started(run_id=answer.run_id, status=answer.status, raw=body)
    if 400 <= status < 500:
        return Refused(status, body, retry_after if status == 429 else None)
    text = body[:_DETAIL_CHARS].decode("utf-8", "replace")
    if status >= 500:
        return Unavailable(status_code=status, detail=f"HTTP {status}: {text}".strip())
    return Unknown(detail=f"HTTP {status}: {text}".strip(), status_code=status)


def not_sent(exc: BaseException) -> bool:
    """True when a transport error proves the request never left (no connection was made)."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def classify_start_failure(exc: BaseException) -> Unavailable | Unknown:
    """The outcome of a transport failure while starting."""
    detail = f"{type(exc).__name__}: {exc}"[:_DETAIL_CHARS]
    return Unavailable(status_code=None, detail=detail) if not_sent(exc) else Unknown(detail=detail)
