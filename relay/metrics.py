"""Prometheus metrics: the worker's, the API's subscriptions-by-state gauge, and who may read them.

The API's request metrics are ``relay.api.request_metrics``'s.

One registry per process, created by the worker's entry point and passed in; nothing is
registered at import time, so tests can build as many workers as they like. With
RELAY_METRICS_TOKEN set, both /metrics endpoints need ``Authorization: Bearer <token>``
(``scrape_allowed``, constant time); without it, no series carries a client name. Must never
log or echo the token.
"""

from __future__ import annotations

import hmac
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class WorkerMetrics:
    """Counters, gauges and histograms the worker updates as it polls and delivers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "relay_polls",
            "Polls of the Intuned result endpoint by outcome",
            ["outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "relay_deliveries", "Delivery attempts by outcome", ["outcome"], registry=r
        )
        self.deferrals = Counter(
            "relay_delivery_deferrals",
            "Delivery attempts put back without counting (reason host_busy or breaker_open)",
            ["reason"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "relay_delivery_attempt_seconds",
            "Duration of one delivery attempt",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag_seconds = Histogram(
            "relay_terminal_to_delivered_seconds",
            "From the poll that saw a terminal status to the receiver's 2xx",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.watched_runs = Gauge(
            "relay_watched_runs", "Runs currently polled (all workers)", registry=r
        )
        self.queue_depth = Gauge(
            "relay_queue_depth", "Due work not yet started (all workers)", ["kind"], registry=r
        )
        self.in_flight = Gauge(
            "relay_in_flight", "Polls and deliveries running in this process", ["kind"], registry=r
        )


def scrape_allowed(authorization: str | None, token: str) -> bool:
    """May this ``Authorization`` header read /metrics? Always, when no token is configured."""
    if not token:
        return True
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def subscriptions_by_state(counts: Mapping[str, Mapping[str, int]], *, by_client: bool) -> bytes:
    """``relay_subscriptions`` in Prometheus text, from counts read at scrape time.

    Labelled ``{client,state}`` when ``by_client`` (the endpoint needs a token), else summed
    over clients as ``{state}``: an open endpoint names no tenant. A fresh registry per scrape:
    the values live in Redis, not in this process.
    """
    registry = CollectorRegistry()
    labels = ["client", "state"] if by_client else ["state"]
    gauge = Gauge(
        "relay_subscriptions",
        "Subscriptions by state (read from Redis at scrape time)",
        labels,
        registry=registry,
    )
    totals: Tally[str] = Tally()
    for client, states in counts.items():
        for state, count in states.items():
            if by_client:
                gauge.labels(client, state).set(count)
            totals[state] += count
    if not by_client:
        for state, count in totals.items():
            gauge.labels(state).set(count)
    return generate_latest(registry)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _guarded(app: WSGIApp, token: str) -> WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if scrape_allowed(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        body = b"401: /metrics needs Authorization: Bearer <RELAY_METRICS_TOKEN>\n"
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Bearer realm="metrics"'),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (wsgiref would print every request to stderr)."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow scraper cannot hold the endpoint."""

    daemon_threads = True


def serve_metrics(port: int, registry: CollectorRegistry, token: str) -> WSGIServer:
    """The worker's /metrics on ``0.0.0.0:port`` in a daemon thread (like prometheus_client's
    ``start_http_server``), behind ``scrape_allowed``. ``server.shutdown()`` stops it."""
    server = make_server(
        "0.0.0.0",
        port,
        _guarded(make_wsgi_app(registry), token),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="relay-metrics", daemon=True).start()
    return server
