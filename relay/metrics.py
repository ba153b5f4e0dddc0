"""Prometheus metrics: the worker's, and the API's subscriptions-by-state gauge.

The API's request metrics come from Litestar's plugin.

One registry per process, created by the worker's entry point and passed in; nothing is
registered at import time, so tests can build as many workers as they like.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


def subscriptions_by_state(counts: Mapping[str, Mapping[str, int]]) -> bytes:
    """``relay_subscriptions{client,state}`` in Prometheus text, from counts read at scrape time.

    A fresh registry per scrape: the values live in Redis, not in this process.
    """
    registry = CollectorRegistry()
    gauge = Gauge(
        "relay_subscriptions",
        "Subscriptions by client and state (read from Redis at scrape time)",
        ["client", "state"],
        registry=registry,
    )
    for client, states in counts.items():
        for state, count in states.items():
            gauge.labels(client, state).set(count)
    return generate_latest(registry)
