"""The API's request series (``relay_api_*``): labelled by route template and status, 5xx
answers counted as errors, nothing left in progress."""

from __future__ import annotations

from typing import Any

import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay.api.request_metrics import RequestMetrics
from tests.support.api_helpers import api_client, api_env, body
from tests.support.relay_fixtures import AUTH_ALPHA


def values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def labels(method: str, path: str, status: int) -> tuple[tuple[str, str], ...]:
    found = {"method": method, "path": path, "status_code": str(status), "app_name": "relay_api"}
    return tuple(sorted(found.items()))


async def test_requests_are_counted_by_route_template_and_status(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    async with api_client(api_env(redis_url)) as api:
        for run in ("r1", "r2"):
            resp = await api.post("/v1/subscriptions", json=body(run=run), headers=AUTH_ALPHA)
            assert resp.status_code == 201, resp.text
        assert (await api.get("/v1/subscriptions/nope", headers=AUTH_ALPHA)).status_code == 404
        assert (await api.post("/v1/subscriptions", json=body())).status_code == 401
        text = (await api.get("/metrics")).text
    requests = values(text, "relay_api_requests_total")
    assert requests[labels("POST", "/v1/subscriptions", 201)] == 2
    assert requests[labels("POST", "/v1/subscriptions", 401)] == 1
    assert requests[labels("GET", "/v1/subscriptions/{subscription_id}", 404)] == 1
    durations = values(text, "relay_api_request_duration_seconds_count")
    assert durations[labels("POST", "/v1/subscriptions", 201)] == 2
    running = values(text, "relay_api_requests_in_progress")
    assert running[labels("POST", "/v1/subscriptions", 200)] == 0
    assert not values(text, "relay_api_requests_error_total")


async def test_a_5xx_answer_is_an_error_and_other_scopes_pass_unrecorded() -> None:
    metrics = RequestMetrics(prefix="relay_api", app_name="relay_api")
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    measured = metrics.middleware(app)
    scope = {"type": "http", "method": "GET", "path_template": "/readyz"}
    await measured(scope, receive, send)
    await measured({"type": "lifespan"}, receive, send)
    text = generate_latest(metrics.registry).decode()
    assert values(text, "relay_api_requests_error_total") == {labels("GET", "/readyz", 503): 1}
    assert values(text, "relay_api_requests_total") == {labels("GET", "/readyz", 503): 1}
    assert values(text, "relay_api_requests_in_progress") == {labels("GET", "/readyz", 200): 0}
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] * 2
