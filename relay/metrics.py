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
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

_le_text = cast(Callable[[float], str], floatToGoString)  # the text Histogram gives ``le``

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


# Seam "counts as plain numbers" (bench/NOTES.md, session 26): the per-poll and per-attempt
# counts are plain ints and floats that the registry reads at scrape time through the public
# custom-collector API. prometheus_client's Counter.labels().inc() and Histogram.observe() check
# labels and take a lock per call: 3.5-4.9 % of the worker's instructions per delivery. One
# thread (the event loop's) writes them; a scrape's thread reads copies taken in one C call.


class CountsByLabel(Collector):
    """A counter family with one label, e.g. ``relay_deliveries_total{outcome}``."""

    def __init__(
        self, name: str, documentation: str, label: str, registry: CollectorRegistry
    ) -> None:
        self._name, self._doc, self._label = name, documentation, label
        self._counts: dict[str, int] = {}
        registry.register(self)

    def inc(self, value: str, amount: int = 1) -> None:
        """Count ``amount`` more for this label value."""
        counts = self._counts
        counts[value] = counts.get(value, 0) + amount

    def collect(self) -> Iterator[Metric]:
        """The family as a scrape shows it (``<name>_total``)."""
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for label_value, count in list(self._counts.items()):
            family.add_metric([label_value], count)
        yield family


class Durations(Collector):
    """A histogram without labels, e.g. ``relay_delivery_attempt_seconds``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._doc = name, documentation
        self._bounds = tuple(float(b) for b in sorted(buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0
        registry.register(self)

    def observe(self, seconds: float) -> None:
        """Count one duration into its bucket (the first bound it does not exceed)."""
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        """The family as a scrape shows it: cumulative buckets, ``_count`` and ``_sum``."""
        counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*self._bounds, INF), counts, strict=True):
            running += count
            cumulative.append((_le_text(bound), float(running)))
        yield HistogramMetricFamily(self._name, self._doc, buckets=cumulative, sum_value=total)


class WorkerMetrics:
    """Counters, gauges and histograms the worker updates as it polls and delivers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = CountsByLabel(
            "relay_polls", "Polls of the Intuned result endpoint by outcome", "outcome", r
        )
        self.deliveries = CountsByLabel(
            "relay_deliveries", "Delivery attempts by outcome", "outcome", r
        )
        self.deferrals = CountsByLabel(
            "relay_delivery_deferrals",
            "Delivery attempts put back without counting (reason host_busy or breaker_open)",
            "reason",
            r,
        )
        self.attempt_seconds = Durations(
            "relay_delivery_attempt_seconds", "Duration of one delivery attempt", LATENCY_BUCKETS, r
        )
        self.lag_seconds = Durations(
            "relay_terminal_to_delivered_seconds",
            "From the poll that saw a terminal status to the receiver's 2xx",
            LATENCY_BUCKETS,
            r,
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
