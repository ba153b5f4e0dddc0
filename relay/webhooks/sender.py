"""The delivery transport: one HTTP POST attempt of a signed webhook, classified as data.

One ``WebhookSender`` per worker process, opened and closed with it. ``send`` never raises for
network trouble; it returns an ``AttemptResult``: ``delivered`` (any 2xx within the timeout),
``gone`` (410) or ``retry`` (everything else, with an error class). Redirects are not followed.
One timeout covers the whole attempt (connect, send, read); waiting for a free connection slot
(``slots``, one per pooled connection) is not counted against the receiver. A caller may hold a
slot across several attempts (``send_held``): the delivery worker passes a host's turn, slot
and all, to the attempt parked behind it. At most ~1 KiB of a response body is read.

Addresses are guarded twice: literal IP hosts (which aiohttp connects to without asking a
resolver) are judged here before connecting, and names go through ``GuardedResolver``, which hands
aiohttp only the addresses it checked. Cookies are never stored (``DummyCookieJar``: a receiver
must not influence another subscription's requests) and proxy settings from the environment are
ignored.

Why aiohttp directly rather than httpx over ``httpx_aiohttp.AiohttpTransport``: it was several
times faster in ``bench/sender_probe.py`` (figures in ``bench/NOTES.md``), the URL parsed and
checked is also the one the connection uses (yarl), and the error classes come without a
translation layer in between.

This module must never touch Redis, sign, or decide retry schedules: it reports one attempt.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Self

import aiohttp
import msgspec

from relay.closing import AsyncClosing
from relay.errors import CallbackRefused
from relay.model import DeliveryOutcome
from relay.webhooks.allowlist import CallbackPolicy
from relay.webhooks.callbacks import (
    DEFAULT_LOOKUP_TIMEOUT,
    GuardedResolver,
    Lookup,
    SsrfRefused,
    literal_refusal,
    validate_callback_url,
)

EXCERPT_BYTES: Final = 1024
_RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one delivery attempt came to; ``error`` is a short class such as ``http_500``.

    Error classes: ``timeout``, ``connect``, ``dns``, ``reset``, ``tls``, ``ssrf_refused``,
    ``invalid_url``, ``protocol``, ``redirect`` (a 3xx), ``http_<code>`` (any other non-2xx).
    """

    outcome: DeliveryOutcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    response_excerpt: str = ""
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After; the caller caps it


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or HTTP-date); None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_error(exc: BaseException) -> str:
    """The error class of a failed attempt's exception."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "ssrf_refused" if isinstance(exc.os_error, SsrfRefused) else "dns"
    if isinstance(exc, SsrfRefused):
        return "ssrf_refused"
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError family
        return "timeout"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid_url"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "reset"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return "reset"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol"
    return "connect"


def _outcome_for_status(status: int) -> tuple[DeliveryOutcome, str | None]:
    if 200 <= status < 300:
        return DeliveryOutcome.DELIVERED, None
    if status == 410:
        return DeliveryOutcome.GONE, "http_410"
    if 300 <= status < 400:
        return DeliveryOutcome.RETRY, "redirect"
    return DeliveryOutcome.RETRY, f"http_{status}"


@functools.lru_cache(maxsize=1024)
def url_refusal(url: str, policy: CallbackPolicy) -> str | None:
    """``invalid_url``, ``ssrf_refused`` (a forbidden IP literal) or None: a pure function of
    the URL and the policy, kept for the last 1,024 URLs (most deliveries share a few)."""
    try:
        parsed = validate_callback_url(url)
    except CallbackRefused:
        return "invalid_url"
    if literal_refusal(parsed.host, policy) is not None:
        return "ssrf_refused"
    return None


class WebhookSender(AsyncClosing):
    """The process's webhook HTTP client: ``async with WebhookSender(...) as s: await s.send()``."""

    def __init__(
        self,
        *,
        timeout: float,
        policy: CallbackPolicy,
        max_connections: int = 100,
        lookup: Lookup | None = None,
        dns_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
    ) -> None:
        if timeout <= 0 or max_connections < 1:
            raise ValueError("timeout must be > 0 and max_connections >= 1")
        self._timeout = timeout
        # The lookup gives up before the attempt does, so a dead DNS is labelled ``dns``.
        self._dns_timeout = min(dns_timeout, timeout / 2)
        self._policy = policy
        self._max_connections = max_connections
        self._lookup = lookup
        # One per pooled connection: ``send`` takes one; a caller of ``send_held`` holds one.
        self.slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (call once, in the worker's startup)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(
                policy=self._policy, lookup=self._lookup, timeout=self._dns_timeout
            ),
            limit=self._max_connections,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # One total timeout per attempt (resolve, connect, send, read the excerpt): aiohttp's
            # own timer is cheaper than asyncio.timeout around each POST. Slots are taken
            # before the request starts, so waiting for one is not counted.
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=("Accept-Encoding",),
            read_bufsize=16 * 1024,
        )

    async def aclose(self) -> None:
        """Close the pool; in-flight sends must have finished."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """POST ``body`` to ``url`` once and classify the answer; network trouble never raises."""
        async with self.slots:
            return await self.send_held(url, body, headers)

    async def send_held(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """``send`` for a caller that holds one of ``slots`` (taken with ``async with``)."""
        if self._session is None:
            raise RuntimeError("WebhookSender.send() before start()")
        started = time.perf_counter()
        refusal = self._refuse_literal(url)
        if refusal is not None:
            return AttemptResult(
                outcome=DeliveryOutcome.RETRY, error=refusal, duration_ms=_ms(started)
            )
        return await self._post(self._session, url, body, headers, started)

    def _refuse_literal(self, url: str) -> str | None:
        """An error class if the URL is malformed or its host is a forbidden IP literal."""
        return url_refusal(url, self._policy)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        started: float,
    ) -> AttemptResult:
        status: int | None = None
        retry_after: float | None = None
        excerpt = bytearray()
        try:
            async with session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as resp:
                status = resp.status
                if status in (429, 503):
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                while len(excerpt) < EXCERPT_BYTES:
                    chunk = await resp.content.read(EXCERPT_BYTES - len(excerpt))
                    if not chunk:
                        break
                    excerpt += chunk
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if status is None:  # no answer at all
                return AttemptResult(
                    outcome=DeliveryOutcome.RETRY,
                    error=classify_error(exc),
                    duration_ms=_ms(started),
                )
            # The status arrived in time; only reading the excerpt failed. The status decides.
        outcome, error = _outcome_for_status(status)
        return AttemptResult(
            outcome=outcome,
            status_code=status,
            error=error,
            duration_ms=_ms(started),
            response_excerpt=excerpt.decode("utf-8", errors="replace"),
            retry_after=retry_after,
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
