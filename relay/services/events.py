"""A subscription's event body, as a pure function of what the relay keeps for it.

The worker sends these bytes and the console shows them: the subscription's document, its event
type and occurrence time, the watch failure of a ``run.watch_failed``, and the run's stored
Intuned result. This module must never do I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime

from relay.intuned.models import RAW_FIELDS_DECODER
from relay.model import EventType, FailureCode, SubscriptionDoc, WatchFailure
from relay.webhooks.payload import build_event_body


def event_body(
    doc: SubscriptionDoc,
    event_type: str,
    occurred_at: int,
    failure: WatchFailure | None,
    result: bytes | None,
) -> bytes:
    """The event body the receiver gets (identical on every attempt and redelivery)."""
    fields = RAW_FIELDS_DECODER.decode(result) if result is not None else None
    pair = None
    if event_type == EventType.WATCH_FAILED:
        pair = (
            (failure.code.value, failure.message)
            if failure
            else (FailureCode.WATCH_TIMEOUT.value, "")
        )
    return build_event_body(
        event_type=event_type,
        occurred_at=datetime.fromtimestamp(occurred_at / 1000, UTC),
        subscription_id=doc.id,
        workspace_id=doc.workspace_id,
        project_name=doc.project_name,
        run_id=doc.run_id,
        intuned_fields=fields,
        metadata=doc.metadata,
        failure=pair,
    )
