"""The webhook body: Intuned's fields copied byte for byte inside our envelope (contract §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.intuned.models import RAW_FIELDS_DECODER
from relay.webhooks.payload import build_event_body, event_type_for_status

AT = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)

# An Intuned result exactly as it might arrive: odd spacing, escapes, unicode, huge numbers, keys
# in non-sorted order, an unknown top-level field and an unknown enum value.
INTUNED = (
    b'{"runId":"run-42","status":"completed",'
    b'"result":{"z":1,"a":[1e400, 12345678901234567890, 0.1000000000000000055511151231257827],'
    b'"text":"caf\\u00e9 \xe2\x98\x83 \\ud83d\\ude00","nested":{"b":null,"a":true}},'
    b'"extendedPayloads":[{"api":"next","parameters":{"page":2}}],'
    b'"futureField":{"kind":"brand-new-enum"},"message":"done",'
    b'"subscriptionId":"intuned-must-not-win","metadata":{"intuned":"must-not-win"}}'
)


def _body(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "event_type": "run.completed",
        "occurred_at": AT,
        "subscription_id": "sub_1",
        "workspace_id": "ws-1",
        "project_name": "proj",
        "run_id": "run-42",
        "intuned_fields": RAW_FIELDS_DECODER.decode(INTUNED),
        "metadata": msgspec.Raw(b'{"order": 7, "tag":"x"}'),
    }
    args.update(overrides)
    return build_event_body(**args)  # type: ignore[arg-type]


def test_intuned_values_are_copied_byte_for_byte() -> None:
    body = _body()
    for value in (
        b'"result":{"z":1,"a":[1e400, 12345678901234567890, 0.1000000000000000055511151231257827],'
        b'"text":"caf\\u00e9 \xe2\x98\x83 \\ud83d\\ude00","nested":{"b":null,"a":true}}',
        b'"extendedPayloads":[{"api":"next","parameters":{"page":2}}]',
        b'"futureField":{"kind":"brand-new-enum"}',
        b'"message":"done"',
        b'"metadata":{"order": 7, "tag":"x"}',
    ):
        assert value in body


def test_envelope_shape_and_key_order() -> None:
    doc = json.loads(_body())
    assert doc["type"] == "run.completed"
    assert doc["timestamp"] == "2026-11-29T10:00:00Z"
    assert list(doc) == ["type", "timestamp", "data"]
    data = doc["data"]
    assert list(data)[:5] == ["subscriptionId", "workspaceId", "projectName", "runId", "status"]
    assert list(data)[-1] == "metadata"
    # Our own keys win over Intuned's top-level fields of the same name.
    assert data["subscriptionId"] == "sub_1"
    assert data["metadata"] == {"order": 7, "tag": "x"}
    assert data["result"]["a"][1] == 12345678901234567890
    assert data["result"]["text"] == "café ☃ 😀"
    assert "failure" not in data


def test_run_id_and_status_come_from_intuned_when_present() -> None:
    fields = RAW_FIELDS_DECODER.decode(b'{"runId":"intuned-id","status":"some-new-status"}')
    data = json.loads(_body(run_id="ours", intuned_fields=fields))["data"]
    assert (data["runId"], data["status"]) == ("intuned-id", "some-new-status")


def test_absent_fields_are_omitted_and_nulls_pass_through() -> None:
    fields = RAW_FIELDS_DECODER.decode(b'{"runId":"r","status":"failed","error":null}')
    data = json.loads(_body(event_type="run.failed", intuned_fields=fields, metadata=None))["data"]
    assert data == {
        "subscriptionId": "sub_1",
        "workspaceId": "ws-1",
        "projectName": "proj",
        "runId": "r",
        "status": "failed",
        "error": None,
        "metadata": {},
    }


def test_watch_failed_with_and_without_a_seen_status() -> None:
    failure = ("watch_timeout", "run not terminal after 24h")
    seen = RAW_FIELDS_DECODER.decode(b'{"runId":"run-9","status":"started"}')
    with_status = json.loads(
        _body(event_type="run.watch_failed", intuned_fields=seen, failure=failure)
    )
    assert with_status["type"] == "run.watch_failed"
    assert with_status["data"]["status"] == "started"
    assert with_status["data"]["failure"] == {
        "code": "watch_timeout",
        "message": "run not terminal after 24h",
    }
    never_seen = json.loads(
        _body(
            event_type="run.watch_failed",
            run_id="run-9",
            intuned_fields=None,
            failure=("run_not_found", "Intuned answered 404"),
        )
    )["data"]
    assert "status" not in never_seen
    assert never_seen["runId"] == "run-9"
    assert never_seen["failure"]["code"] == "run_not_found"


def test_timestamp_is_utc_seconds_z_and_naive_is_refused() -> None:
    plus2 = datetime(2026, 11, 29, 12, 0, 59, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert json.loads(_body(occurred_at=plus2))["timestamp"] == "2026-11-29T10:00:59Z"
    with pytest.raises(ValueError, match="timezone"):
        _body(occurred_at=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"event_type": "run.begun"}, "event type"),
        ({"failure": ("watch_timeout", "x")}, "failure"),
        ({"event_type": "run.watch_failed"}, "failure"),
        ({"event_type": "run.watch_failed", "failure": ("nope", "x")}, "failure code"),
    ],
)
def test_inconsistent_arguments_are_refused(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _body(**overrides)


def test_event_type_for_status() -> None:
    assert event_type_for_status("completed") == "run.completed"
    assert event_type_for_status("failed") == "run.failed"
    assert event_type_for_status("canceled") == "run.canceled"
    with pytest.raises(ValueError, match="terminal"):
        event_type_for_status("pending")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=50, deadline=None)
@given(fields=st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=6))
def test_any_intuned_body_passes_through(fields: dict[str, object]) -> None:
    raw_json = json.dumps(fields, ensure_ascii=False, indent=1).encode()
    decoded = RAW_FIELDS_DECODER.decode(raw_json)
    body = _body(intuned_fields=decoded)
    data = json.loads(body)["data"]
    for key, raw in decoded.items():
        if key not in ("subscriptionId", "workspaceId", "projectName", "metadata"):
            assert bytes(raw) in body
            assert data[key] == json.loads(bytes(raw))


def test_a_started_event_carries_the_run_and_metadata_without_intuned_fields() -> None:
    body = build_event_body(
        event_type="run.started",
        occurred_at=datetime(2026, 11, 29, 10, 0, tzinfo=UTC),
        subscription_id="sub_1",
        workspace_id="ws",
        project_name="p",
        run_id="r1",
        intuned_fields=None,
        metadata=msgspec.Raw(b'{"k":1}'),
    )
    assert body == (
        b'{"type":"run.started","timestamp":"2026-11-29T10:00:00Z","data":{"subscriptionId":'
        b'"sub_1","workspaceId":"ws","projectName":"p","runId":"r1","status":"started",'
        b'"metadata":{"k":1}}}'
    )
