"""The API's request metrics (``relay_api_*``): one ASGI middleware and the series it updates.

The same series, labels and meanings as Litestar's Prometheus plugin, which wrote them before:
``relay_api_requests_total``, ``relay_api_request_duration_seconds`` (from the request's start to
its last body message; 0 when no body was sent), ``relay_api_requests_in_progress`` (counted
under status 200) and ``relay_api_requests_error_total`` (5xx answers), labelled ``method``,
``path`` (the route's template, never the raw path), ``status_code`` and ``app_name``. The plugin
built a ``Request``, parsed the URL, wrapped ``send`` with ``functools.wraps`` and looked up four
labelled children on every request; here a label set's children are looked up once and kept, so
a request costs two clock reads and four updates. The series live in the app's own registry,
which ``/metrics`` writes after the process's. Must never label a series with anything else taken
from the request (no client, no id: an open ``/metrics`` must not name a tenant).
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LABELS = ("method", "path", "status_code", "app_name")
# Before its answer starts, a request counts under this status (as the plugin's gauge did).
_UNANSWERED = 200


class RequestMetrics:
    """The request series of one app, in their own registry, and the middleware that updates
    them (``Litestar(middleware=[metrics.middleware])``)."""

    def __init__(self, prefix: str, app_name: str) -> None:
        self.registry = CollectorRegistry()
        self.app_name = app_name
        r = self.registry
        self.requests = Counter(f"{prefix}_requests_total", "Total requests", _LABELS, registry=r)
        self.seconds = Histogram(
            f"{prefix}_request_duration_seconds",
            "Request duration, in seconds",
            _LABELS,
            registry=r,
        )
        self.in_progress = Gauge(
            f"{prefix}_requests_in_progress",
            "Total requests currently in progress",
            _LABELS,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.errors = Counter(
            f"{prefix}_requests_error_total", "Total errors in requests", _LABELS, registry=r
        )
        self._running: dict[tuple[str, str], Gauge] = {}
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def running(self, method: str, path: str) -> Gauge:
        """The in-progress gauge of one route and method."""
        gauge = self._running.get((method, path))
        if gauge is None:
            gauge = self.in_progress.labels(method, path, _UNANSWERED, self.app_name)
            self._running[method, path] = gauge
        return gauge

    def answered(self, method: str, path: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and duration histogram of one route, method and status."""
        series = self._answered.get((method, path, status))
        if series is None:
            labels = (method, path, status, self.app_name)
            series = (self.requests.labels(*labels), self.seconds.labels(*labels))
            self._answered[method, path, status] = series
        return series

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware: every HTTP request is counted, timed and, for a 5xx, an error."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method, path = scope["method"], scope["path_template"]
            started = time.perf_counter()
            status, seconds = _UNANSWERED, 0.0

            async def send_timed(message: Message) -> None:
                nonlocal status, seconds
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body":
                    seconds = time.perf_counter() - started
                await send(message)

            running = self.running(method, path)
            running.inc()
            try:
                await app(scope, receive, send_timed)
            finally:
                running.dec()
                requests, duration = self.answered(method, path, status)
                if status >= 500:  # looked up here only: no error series for other statuses
                    self.errors.labels(method, path, status, self.app_name).inc()
                requests.inc()
                duration.observe(seconds)

        return measured
