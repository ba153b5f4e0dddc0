"""The async client of Intuned's Run API: start a run, fetch its result, classify every outcome.

Every call returns exactly one typed outcome of ``relay.intuned.models`` and raises nothing for
anything Intuned (or the network) does:

=====================================  =========================================================
2xx + well-formed envelope             ``Fetched`` (decoded result, raw body, raw top-level fields)
2xx that is not a JSON envelope        ``Transient(BAD_BODY)``
404                                    ``NotFoundOutcome``
401 / 403                              ``Unauthorized``
429                                    ``RateLimited`` (``Retry-After`` seconds or HTTP-date)
5xx                                    ``Transient(HTTP_5XX)``
timeout (connect, read, or the total)  ``Transient(TIMEOUT)``
connection refused / reset / closed    ``Transient(CONNECTION)``
other statuses                         ``Transient(HTTP_STATUS)``
=====================================  =========================================================

``start`` answers the outcomes of ``relay.intuned.start`` instead (``Started``, ``Refused``,
``Unavailable``, ``Unknown``): a start that may have reached Intuned is ``Unknown`` and must
never be retried, since Intuned documents no idempotency key. The client is built from
explicit values, never from the environment, and must never log, repr or return the API key.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp.http_exceptions import ContentEncodingError

from relay.closing import AsyncClosing
from relay.intuned.models import (
    RESULT_DECODER,
    Fetched,
    NotFoundOutcome,
    PollOutcome,
    RateLimited,
    Transient,
    TransientKind,
    Unauthorized,
)
from relay.intuned.start import StartOutcome, classify_start_answer, classify_start_failure

log = logging.getLogger(__name__)

USER_AGENT: Final = "intuned-relay/0.1"
_DETAIL_CHARS: Final = 300
_START_ENCODER: Final = msgspec.json.Encoder()
_KEEPALIVE: Final = 5.0  # seconds an idle connection is kept


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date); None if unusable.

    Negative delays and dates in the past become 0. ``now`` (Unix seconds) is for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


class Reply:
    """An answer with its body read: what the classifiers look at."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


def _detail(response: Reply) -> str:
    """A short, safe description of an error body: its JSON ``message`` or its first chars."""
    content = response.content
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text: str = body["message"]
    else:
        text = content[:_DETAIL_CHARS].decode("utf-8", "replace")
    return f"HTTP {response.status_code}: {text[:_DETAIL_CHARS]}".strip()


def _transport_kind(exc: BaseException) -> TransientKind:
    """``timeout`` or ``connection`` for a transport failure."""
    return TransientKind.TIMEOUT if isinstance(exc, TimeoutError) else TransientKind.CONNECTION


def _classify_common(
    response: Reply,
) -> NotFoundOutcome | Unauthorized | RateLimited | Transient | None:
    status = response.status_code
    if status == 404:
        return NotFoundOutcome(detail=_detail(response))
    if status in (401, 403):
        return Unauthorized(status_code=status, detail=_detail(response))
    if status == 429:
        return RateLimited(retry_after=parse_retry_after(response.headers.get("retry-after")))
    if status >= 500:
        return Transient(kind=TransientKind.HTTP_5XX, status_code=status, detail=_detail(response))
    return None


def classify_result(response: Reply) -> PollOutcome:
    """The outcome of a ``GET …/result`` answer (body already read)."""
    if 200 <= response.status_code < 300:
        raw = response.content
        try:
            result = RESULT_DECODER.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            detail = f"HTTP {response.status_code} body is not a result envelope: {exc}"
            return Transient(
                kind=TransientKind.BAD_BODY, status_code=response.status_code, detail=detail
            )
        return Fetched(result=result, raw=raw)
    common = _classify_common(response)
    if common is not None:
        return common
    return Transient(
        kind=TransientKind.HTTP_STATUS, status_code=response.status_code, detail=_detail(response)
    )


def disable_silent_retry(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """Stop aiohttp from silently re-sending an idempotent request once when a connection drops.

    Every request Intuned sees must be one the caller asked for (rate limits and poll counts stay
    honest), and a reset must surface as ``Transient(CONNECTION)``. aiohttp has no public switch
    for this retry (aio-libs/aiohttp#10790); its private ``_retry_connection`` attribute (added by
    aio-libs/aiohttp#9396 for aiohttp's own tests) is the only way. This is the one place the
    relay touches it; if an upgrade renames it, this raises instead of silently re-sending.
    """
    if not hasattr(session, "_retry_connection"):
        raise RuntimeError(
            "aiohttp.ClientSession has no _retry_connection any more: "
            "find the new way to disable the silent retry (aio-libs/aiohttp#10790)"
        )
    session._retry_connection = False
    return session


def _session_factory(
    max_connections: int, timeout: float, *, force_close: bool = False
) -> Callable[[], aiohttp.ClientSession]:
    """Build the aiohttp session lazily, inside the loop that first uses the client."""

    def make() -> aiohttp.ClientSession:
        if force_close:  # a fresh connection each time: a drop then surely came after sending
            connector = aiohttp.TCPConnector(limit=max_connections, force_close=True)
        else:
            connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=_KEEPALIVE)
        # aiohttp's own total timeout covers connect, send and reading the body.
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
        )
        return disable_silent_retry(session)

    return make


class IntunedClient(AsyncClosing):
    """One workspace's Run API client; one per process, closed by its owner (``aclose``)."""

    def __init__(
        self,
        base_url: str,
        workspace_id: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 100,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.workspace_id = workspace_id
        self.timeout = timeout
        headers = {"x-api-key": api_key, "accept": "application/json", "user-agent": USER_AGENT}
        # aiohttp directly: httpx over httpx-aiohttp costs about as much CPU again per request
        # as aiohttp itself (bench/RESULTS.md, polling profile). Tests use the same path, against
        # the fake Intuned over sockets.
        self._headers = headers
        # Polls at once, taken before a request starts: waiting for a pooled connection is not
        # charged against the request's timeout (the pump may hold more polls than connections).
        self._slots = asyncio.Semaphore(max_connections)
        self._make_session = _session_factory(max_connections, timeout)
        self._make_start_session = _session_factory(8, timeout, force_close=True)
        self._session: aiohttp.ClientSession | None = None
        self._start_session: aiohttp.ClientSession | None = None
        self._ws_path = "/" + quote(workspace_id, safe="")

    def __repr__(self) -> str:
        return f"IntunedClient(base_url={self.base_url!r}, workspace_id={self.workspace_id!r})"

    __str__ = __repr__

    def _url(self, project_name: str, tail: str) -> str:
        return f"{self.base_url}{self._ws_path}/projects/{quote(project_name, safe='')}/{tail}"

    async def _request(self, method: str, url: str, body: bytes | None, *, fresh: bool) -> Reply:
        """Send one request under a total deadline and read its body (transport errors raise).

        ``fresh``: on a connection of its own, never a pooled one (the start path).
        """
        headers = {"content-type": "application/json"} if body is not None else None
        session = self._aiohttp_session(fresh)
        merged = self._headers if headers is None else {**self._headers, **headers}
        async with session.request(
            method, url, data=body, headers=merged, allow_redirects=False
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def _send(self, method: str, url: str, body: bytes | None) -> Reply | Transient:
        """Send one request and read its body; transport failures typed as ``Transient``."""
        started = time.perf_counter()
        try:
            response = await self._request(method, url, body, fresh=False)
        except aiohttp.ClientPayloadError as exc:
            if isinstance(exc.__cause__, ContentEncodingError):
                detail = f"undecodable body: {exc}"[:_DETAIL_CHARS]
                return Transient(kind=TransientKind.BAD_BODY, detail=detail)
            return Transient(
                kind=TransientKind.CONNECTION, detail=f"{type(exc).__name__}: {exc}"[:_DETAIL_CHARS]
            )
        except (aiohttp.ClientError, OSError) as exc:  # OSError: TimeoutError
            kind = _transport_kind(exc)
            log.debug("intuned %s %s failed: %s (%s)", method, url, kind, type(exc).__name__)
            return Transient(kind=kind, detail=f"{type(exc).__name__}: {exc}"[:_DETAIL_CHARS])
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.debug("intuned %s %s -> %d in %.1f ms", method, url, response.status_code, elapsed_ms)
        return response

    def _aiohttp_session(self, fresh: bool) -> aiohttp.ClientSession:
        """The pooled session, or the start path's one; built in the loop that first uses it."""
        if fresh:
            if self._start_session is None:
                self._start_session = self._make_start_session()
            return self._start_session
        if self._session is None:
            self._session = self._make_session()
        return self._session

    async def get_result(self, project_name: str, run_id: str) -> PollOutcome:
        """Fetch a run's result envelope (``GET …/run/{runId}/result``) and classify it."""
        url = self._url(project_name, f"run/{quote(run_id, safe='')}/result")
        async with self._slots:
            response = await self._send("GET", url, None)
        return response if isinstance(response, Transient) else classify_result(response)

    async def start(self, project_name: str, body: bytes | Mapping[str, Any]) -> StartOutcome:
        """Start a run (``POST …/run/start``) with ``body`` exactly as given; never retried.

        ``bytes`` go out unchanged; a mapping is JSON-encoded with every field it has (unknown
        ones included). The outcome says whether a retry is safe (``relay.intuned.start``).
        """
        raw = body if isinstance(body, bytes) else _START_ENCODER.encode(body)
        url = self._url(project_name, "run/start")
        try:
            reply = await self._request("POST", url, raw, fresh=True)
        except (aiohttp.ClientError, OSError) as exc:  # OSError: TimeoutError
            log.debug("intuned start %s failed: %s", url, type(exc).__name__)
            return classify_start_failure(exc)
        wait = parse_retry_after(reply.headers.get("retry-after"))
        return classify_start_answer(reply.status_code, reply.content, wait)

    async def aclose(self) -> None:
        """Close the connection pool."""
        for session in (self._session, self._start_session):
            if session is not None:
                await session.close()
        self._session = self._start_session = None
