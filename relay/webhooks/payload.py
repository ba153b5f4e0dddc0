"""The webhook body (contract §4), built once per event and stored; every retry sends those bytes.

Intuned's top-level fields arrive as ``msgspec.Raw`` (the exact bytes Intuned sent for each value)
and are copied verbatim: numbers such as ``1e400`` or ``12345678901234567890``, escapes, unicode
and nested key order survive untouched, and unknown fields and enum values pass through. Only the
envelope around them is encoded by us. Key order inside ``data``: ``subscriptionId``,
``workspaceId``, ``projectName``, ``runId``, ``status``, Intuned's other fields in the order
received, ``failure`` (``run.watch_failed`` only), ``metadata`` (``{}`` when the subscription has
none).

This module is pure computation: it must never do I/O, touch Redis, or re-encode Intuned's values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import msgspec

from relay.model import EVENT_FOR_STATUS, EventType, FailureCode, RunStatus

EVENT_TYPES: Final = frozenset(e.value for e in EventType)
FAILURE_CODES: Final = frozenset(c.value for c in FailureCode)
WATCH_FAILED: Final = EventType.WATCH_FAILED.value

# Keys of ``data`` that the relay owns: an Intuned field of the same name never overrides them.
_OWN_KEYS: Final = frozenset({"subscriptionId", "workspaceId", "projectName", "metadata"})
_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")
_ENCODER: Final = msgspec.json.Encoder()


def event_type_for_status(status: str) -> str:
    """``run.completed`` / ``run.failed`` / ``run.canceled`` for a terminal Intuned status."""
    try:
        return EVENT_FOR_STATUS[RunStatus(status)]
    except (KeyError, ValueError):
        raise ValueError(f"{status!r} is not a terminal run status") from None


def rfc3339_utc(moment: datetime) -> str:
    """``2026-11-29T10:00:00Z``: UTC, whole seconds; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_event_body(
    *,
    event_type: str,
    occurred_at: datetime,
    subscription_id: str,
    workspace_id: str,
    project_name: str,
    run_id: str,
    intuned_fields: dict[str, msgspec.Raw] | None,
    metadata: msgspec.Raw | None,
    failure: tuple[str, str] | None = None,
) -> bytes:
    """Encode one event's body. ``runId``/``status`` come from Intuned's fields when present."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if (event_type == WATCH_FAILED) != (failure is not None):
        raise ValueError("failure is required for run.watch_failed and only for it")
    if failure is not None and failure[0] not in FAILURE_CODES:
        raise ValueError(f"unknown failure code {failure[0]!r}")

    fields = intuned_fields or {}
    data: dict[str, object] = {
        "subscriptionId": subscription_id,
        "workspaceId": workspace_id,
        "projectName": project_name,
        "runId": fields.get("runId", run_id),
    }
    if "status" in fields:
        data["status"] = fields["status"]
    elif event_type != WATCH_FAILED:
        # A terminal event without Intuned's status (never seen in practice): the type says it.
        data["status"] = event_type.removeprefix("run.")
    for key, raw in fields.items():
        if key not in data and key not in _OWN_KEYS:
            data[key] = raw
    if failure is not None:
        data["failure"] = {"code": failure[0], "message": failure[1]}
    data["metadata"] = metadata if metadata is not None else _EMPTY_OBJECT
    return _ENCODER.encode(
        {"type": event_type, "timestamp": rfc3339_utc(occurred_at), "data": data}
    )


# Events about the relay itself rather than a run: the test ping, and the operational events
# sent to a client's operational webhook (contract §6).
CONTROL_EVENT_TYPES: Final = frozenset(
    {"relay.ping", "subscription.exhausted", "subscription.gone", "intuned.unauthorized"}
)


def build_control_body(*, event_type: str, occurred_at: datetime, data: object) -> bytes:
    """Encode a control event: ``{"type", "timestamp", "data"}`` with ``data`` as given."""
    if event_type not in CONTROL_EVENT_TYPES:
        raise ValueError(f"unknown control event type {event_type!r}")
    return _ENCODER.encode(
        {"type": event_type, "timestamp": rfc3339_utc(occurred_at), "data": data}
    )
