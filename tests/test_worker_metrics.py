"""The worker's hot counts (``CountsByLabel``, ``Durations``) scrape exactly as prometheus_client's
own ``Counter`` and ``Histogram`` would for the same observations, but for their ``_created``
series: same names, labels, ``le`` texts, cumulative buckets, counts and sums."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from relay.metrics import LATENCY_BUCKETS, CountsByLabel, Durations, WorkerMetrics

# Each bound itself (an observation equal to a bound belongs to that bucket), between bounds,
# zero, and above the largest bound.
SECONDS = [*LATENCY_BUCKETS, 0.0, 0.0049, 0.0051, 0.3, 7.0, 3600.5, 1e6]


def scrape(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_counts_and_durations_scrape_as_prometheus_client_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("relay_deliveries", "Delivery attempts", ["outcome"], registry=theirs)
    histogram = Histogram(
        "relay_delivery_attempt_seconds", "One attempt", buckets=LATENCY_BUCKETS, registry=theirs
    )
    counts = CountsByLabel("relay_deliveries", "Delivery attempts", "outcome", ours)
    durations = Durations("relay_delivery_attempt_seconds", "One attempt", LATENCY_BUCKETS, ours)
    for outcome, times in (("delivered", 3), ("retry", 1), ("dns", 2)):
        for _ in range(times):
            counter.labels(outcome).inc()
            counts.inc(outcome)
    counter.labels("delivered").inc(5)
    counts.inc("delivered", 5)
    for seconds in SECONDS:
        histogram.observe(seconds)
        durations.observe(seconds)
    assert scrape(ours) == scrape(theirs)
    assert 'relay_deliveries_total{outcome="delivered"} 8.0' in scrape(ours)
    assert 'relay_delivery_attempt_seconds_bucket{le="0.005"} 3.0' in scrape(ours)


def test_a_fresh_worker_shows_its_histograms_at_zero_and_no_counts_yet() -> None:
    m = WorkerMetrics()
    lines = scrape(m.registry)
    assert 'relay_terminal_to_delivered_seconds_bucket{le="+Inf"} 0.0' in lines
    assert "relay_delivery_attempt_seconds_count 0.0" in lines
    assert not [line for line in lines if line.startswith("relay_polls_total")]
