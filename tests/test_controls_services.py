"""The pure parts of the control services: outcome classification and event bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from relay.errors import ConfigError
from relay.model import Attempt, Subscription, SubState
from relay.services.operational import intuned_unauthorized_event, subscription_event
from relay.services.test_delivery import ping_body, result_of
from relay.settings import Settings
from relay.webhooks.payload import build_control_body
from relay.webhooks.sender import AttemptResult
from tests.support.api_helpers import make_doc
from tests.support.relay_fixtures import base_env


@pytest.mark.parametrize(
    ("attempt", "outcome"),
    [
        (AttemptResult(outcome="delivered", status_code=204, duration_ms=1.0), "delivered"),
        (AttemptResult(outcome="gone", status_code=410, error="http_410", duration_ms=1), "failed"),
        (AttemptResult(outcome="retry", error="timeout", duration_ms=1.0), "failed"),
        (AttemptResult(outcome="retry", error="ssrf_refused", duration_ms=0.1), "refused"),
        (AttemptResult(outcome="retry", error="invalid_url", duration_ms=0.1), "refused"),
    ],
)
def test_attempts_are_classified_for_the_client(attempt: AttemptResult, outcome: str) -> None:
    result = result_of(attempt)
    assert result.outcome == outcome
    assert (result.status_code, result.error) == (attempt.status_code, attempt.error)


def test_the_ping_names_its_client() -> None:
    body = json.loads(ping_body("alpha", datetime(2026, 11, 29, 10, tzinfo=UTC)))
    assert body == {
        "type": "relay.ping",
        "timestamp": "2026-11-29T10:00:00Z",
        "data": {"client": "alpha", "message": "test delivery from intuned-relay"},
    }


def test_unknown_control_events_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown control event"):
        build_control_body(event_type="run.completed", occurred_at=datetime.now(UTC), data={})


def _sub(state: SubState, series: int = 1) -> Subscription:
    doc = make_doc(
        "alpha",
        "p",
        "r1",
        1_700_000_000_000,
        workspace_id="ws",
        callback_url="https://hooks.example/x",
        events=("completed",),
        metadata=b'{"k":1}',
        id="sub_abc",
        headers={"Authorization": "Bearer secret-value"},
    )
    attempt = Attempt(
        attempt=1,
        at=1_700_000_001_000,
        status_code=500,
        error="http_500",
        duration_ms=3.0,
        series=series,
    )
    return Subscription(
        doc=doc,
        state=state,
        updated_at=1_700_000_002_000,
        next_attempt_at=None,
        attempts_in_series=1,
        series=series,
        event_type="run.completed",
        run_status="completed",
        attempts=(attempt,),
    )


def test_an_exhausted_subscription_event_carries_its_view_without_header_values() -> None:
    event = subscription_event(_sub(SubState.EXHAUSTED), "completed")
    assert event is not None and event.client == "alpha"
    body = json.loads(event.body)
    assert body["type"] == "subscription.exhausted"
    assert body["data"]["id"] == "sub_abc" and body["data"]["state"] == "exhausted"
    assert body["data"]["headers"] == {"Authorization": "***"}
    assert body["data"]["attempts"][0]["series"] == 1
    assert b"secret-value" not in event.body


def test_subscription_event_ids_differ_per_series_and_event_only() -> None:
    first = subscription_event(_sub(SubState.EXHAUSTED, 1), None)
    again = subscription_event(_sub(SubState.EXHAUSTED, 1), "completed")
    second = subscription_event(_sub(SubState.EXHAUSTED, 2), None)
    gone = subscription_event(_sub(SubState.GONE, 1), None)
    assert first and again and second and gone
    assert first.msg_id == again.msg_id
    assert len({first.msg_id, second.msg_id, gone.msg_id}) == 3
    assert subscription_event(_sub(SubState.DELIVERED), None) is None


def test_the_unauthorized_event_is_the_same_for_one_incident() -> None:
    started = datetime(2026, 11, 29, 10, 0, 5, tzinfo=UTC)
    one = intuned_unauthorized_event("alpha", 401, started)
    two = intuned_unauthorized_event("alpha", 401, started)
    assert one.msg_id == two.msg_id
    assert json.loads(one.body)["data"]["statusCode"] == 401


def test_the_control_settings_are_read_and_checked() -> None:
    env = base_env("redis://127.0.0.1:1/0", "http://127.0.0.1:9")
    assert Settings.from_env(env).run_sharing == "workspace"
    assert Settings.from_env(env).test_deliveries_per_minute == 10
    owner = Settings.from_env({**env, "RELAY_RUN_SHARING": " Owner "})
    assert owner.run_sharing == "owner"
    with pytest.raises(ConfigError, match="RELAY_RUN_SHARING 'tenant' must be workspace or owner"):
        Settings.from_env({**env, "RELAY_RUN_SHARING": "tenant"})
    with pytest.raises(ConfigError, match="RELAY_TEST_DELIVERIES_PER_MINUTE"):
        Settings.from_env({**env, "RELAY_TEST_DELIVERIES_PER_MINUTE": "0"})
