"""Who may read ``/metrics``: with RELAY_METRICS_TOKEN, only a bearer of it (API port and the
worker's port); without it, anyone, but no series carries a client name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from relay.embedded_redis import free_port
from relay.errors import ConfigError
from relay.metrics import serve_metrics
from relay.settings import Settings
from tests.support.api_helpers import api_client, api_env, body
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA

TOKEN = "metrics-token-0123456789"
BAD = [
    {},
    {"Authorization": "Bearer metrics-token-012345678"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    AUTH_ALPHA,  # a client's key is not the metrics token
]


def labels_of(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def _subscribe_three(api: Any) -> None:
    for run, auth in (("r1", AUTH_ALPHA), ("r2", AUTH_ALPHA), ("r3", AUTH_BETA)):
        resp = await api.post("/v1/subscriptions", json=body(run=run), headers=auth)
        assert resp.status_code == 201, resp.text


async def test_without_a_token_metrics_are_open_and_name_no_client(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    async with api_client(api_env(redis_url)) as api:
        await _subscribe_three(api)
        resp = await api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].count("charset") == 1
    assert all(
        "client" not in labels
        for f in text_string_to_metric_families(resp.text)
        for labels in (dict(s.labels) for s in f.samples)
    )
    assert "alpha" not in resp.text and "beta" not in resp.text
    watching = [
        s.value
        for f in text_string_to_metric_families(resp.text)
        for s in f.samples
        if s.name == "relay_subscriptions" and s.labels == {"state": "watching"}
    ]
    assert watching == [3]  # summed over both clients


async def test_with_a_token_metrics_need_it_and_name_clients(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    async with api_client(api_env(redis_url, RELAY_METRICS_TOKEN=TOKEN)) as api:
        await _subscribe_three(api)
        refused = [await api.get("/metrics", headers=h) for h in BAD]
        resp = await api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    for r in refused:
        assert r.status_code == 401 and r.json()["detail"].startswith("/metrics needs")
        assert TOKEN not in r.text and "relay_subscriptions" not in r.text
    assert resp.status_code == 200
    found = {
        (labels["client"], labels["state"]): True
        for labels in labels_of(resp.text, "relay_subscriptions")
    }
    assert ("alpha", "watching") in found and ("beta", "watching") in found


@pytest.fixture
def worker_metrics() -> Iterator[tuple[str, CollectorRegistry]]:
    registry = CollectorRegistry()
    Counter("relay_polls", "polls", ["outcome"], registry=registry).labels("terminal").inc()
    port = free_port()
    server = serve_metrics(port, registry, TOKEN)
    try:
        yield f"http://127.0.0.1:{port}/metrics", registry
    finally:
        server.shutdown()
        server.server_close()


def test_the_worker_metrics_port_needs_the_token(
    worker_metrics: tuple[str, CollectorRegistry],
) -> None:
    url, _ = worker_metrics
    for headers in BAD:
        resp = httpx.get(url, headers=headers)
        assert resp.status_code == 401 and "relay_polls" not in resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer")
    ok = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and 'relay_polls_total{outcome="terminal"} 1.0' in ok.text


def test_an_open_worker_metrics_port_answers_anyone() -> None:
    port = free_port()
    server = serve_metrics(port, CollectorRegistry(), "")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_short_metrics_token_is_a_configuration_error(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_METRICS_TOKEN"):
        Settings.from_env(api_env(redis_url, RELAY_METRICS_TOKEN="short"))
