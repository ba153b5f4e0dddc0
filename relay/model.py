"""The relay's vocabulary: subscriptions, watches, attempts and their states, as msgspec Structs.

These are the shapes stored in Redis (``relay.store`` owns the keys) and passed between the API
and the workers. This module does no I/O.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Iterable
from enum import StrEnum
from typing import Final
from urllib.parse import quote

import msgspec


class SubState(StrEnum):
    """Where a subscription is in its life (contract §3)."""

    WATCHING = "watching"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    EXHAUSTED = "exhausted"
    GONE = "gone"
    CANCELED = "canceled"
    SKIPPED = "skipped"


FINAL_STATES: Final = frozenset(
    {SubState.DELIVERED, SubState.EXHAUSTED, SubState.GONE, SubState.CANCELED, SubState.SKIPPED}
)
REDELIVERABLE_STATES: Final = frozenset(
    {SubState.DELIVERED, SubState.EXHAUSTED, SubState.GONE, SubState.DELIVERING}
)


class RunStatus(StrEnum):
    """Intuned's ``status`` of a run that the relay acts on (Intuned may add others)."""

    PENDING = "pending"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL_STATUSES: Final = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
EVENT_STATUSES: Final = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)
# What a subscription's ``events`` may name: the terminal statuses (the default, all three) and
# ``started`` (opt-in: one ``run.started`` event when the relay first sees the run started).
SUBSCRIBABLE_STATUSES: Final = (*EVENT_STATUSES, RunStatus.STARTED)


def wanted_events(events: Iterable[str] | None) -> tuple[RunStatus, ...]:
    """A subscription's ``events`` in canonical order; None (not given) is the three terminal
    statuses."""
    if events is None:
        return EVENT_STATUSES
    chosen = set(events)
    return tuple(e for e in SUBSCRIBABLE_STATUSES if e in chosen)


class WatchState(StrEnum):
    """Where the poll loop of one run is."""

    WATCHING = "watching"  # polled on schedule
    IDLE = "idle"  # no active subscriber left: not polled
    TERMINAL = "terminal"  # Intuned reported completed/failed/canceled
    FAILED = "failed"  # the relay gave up (run_not_found, intuned_unauthorized, watch_timeout)


class FailureCode(StrEnum):
    """``data.failure.code`` of a ``run.watch_failed`` event."""

    RUN_NOT_FOUND = "run_not_found"
    INTUNED_UNAUTHORIZED = "intuned_unauthorized"
    WATCH_TIMEOUT = "watch_timeout"
    RESULT_TOO_LARGE = "result_too_large"


class EventType(StrEnum):
    """The ``type`` of a webhook about a run."""

    COMPLETED = "run.completed"
    FAILED = "run.failed"
    CANCELED = "run.canceled"
    WATCH_FAILED = "run.watch_failed"
    STARTED = "run.started"  # opt-in, on its own delivery lane (never delays the terminal one)


EVENT_FOR_STATUS: Final = {
    RunStatus.COMPLETED: EventType.COMPLETED,
    RunStatus.FAILED: EventType.FAILED,
    RunStatus.CANCELED: EventType.CANCELED,
}


class ChangeOutcome(StrEnum):
    """What a cancel or a redeliver came to."""

    OK = "ok"
    NOT_FOUND = "not_found"  # no such subscription for this client
    CONFLICT = "conflict"  # the subscription's state does not allow it (the state is returned)


class DueWork(StrEnum):
    """What a leased entry of the due poll set asks for (``claim_polls.lua``)."""

    POLL = "poll"  # the run is watched: poll Intuned
    FANOUT = "fanout"  # the run ended: move its next batch of subscriptions to delivery


class PollKind(StrEnum):
    """What a poll came to, as recorded: a fetched envelope, a retryable error, or giving up."""

    RESULT = "result"
    ERROR = "error"
    FAIL = "fail"


class PushOutcome(StrEnum):
    """What an authenticated push did to its run's watch (``push.lua``)."""

    TRIGGERED = "triggered"  # the run's poll is due now
    COALESCED = "coalesced"  # a poll for an earlier push is still to come, or was just made
    IGNORED = "ignored"  # the run is no longer watched


class PollRecord(StrEnum):
    """What recording a poll did to the watch."""

    STALE = "stale"  # the watch was not watching any more: nothing changed
    SCHEDULED = "scheduled"  # the next poll is due later
    TERMINAL = "terminal"  # the run ended: its subscribers move to delivery (fan-out)
    FAILED = "failed"  # the relay gave up: its subscribers get run.watch_failed (fan-out)


class RegisterAction(StrEnum):
    """What registering a subscription did."""

    POLL = "poll"  # a new watch: the run's first poll is due now
    JOIN = "join"  # the run was being watched already
    DELIVER = "deliver"  # the run's terminal result is cached: delivery is due now
    SKIP = "skip"  # the run ended in a status the subscription did not ask for
    EXISTING = "existing"  # the same registration existed: nothing written
    QUOTA_CLIENT = "quota_client"  # RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT reached: nothing written
    QUOTA_RUN = "quota_run"  # RELAY_MAX_SUBSCRIPTIONS_PER_RUN reached: nothing written
    CONFLICT = "conflict"  # the same registration exists with other metadata or headers
    NOT_OWNER = "not_owner"  # RELAY_RUN_SHARING=owner: the run is another client's


class DeliveryOutcome(StrEnum):
    """What one delivery attempt means for its subscription."""

    DELIVERED = "delivered"
    GONE = "gone"
    EXHAUSTED = "exhausted"
    RETRY = "retry"


class Lane(StrEnum):
    """A subscription's delivery lanes: its terminal event, and the opt-in run.started."""

    TERMINAL = "terminal"
    STARTED = "started"


class StartKeyState(StrEnum):
    """What an ``Idempotency-Key`` of ``POST /v1/runs`` holds (contract §7)."""

    NEW = "new"  # just taken by this request
    PENDING = "pending"  # another request with the key is starting the run
    DONE = "done"  # answered: the stored answer is the answer
    UNKNOWN = "unknown"  # the start may or may not have reached Intuned: never retried
    MISMATCH = "mismatch"  # the key was used with another body


class SubscriptionDoc(msgspec.Struct, frozen=True, kw_only=True):
    """The immutable part of a subscription, stored once at registration."""

    id: str
    client: str
    workspace_id: str
    project_name: str
    run_id: str
    callback_url: str
    events: tuple[str, ...]
    metadata: msgspec.Raw  # a JSON object, {} when none was given
    created_at: int  # ms since the epoch
    # Extra headers sent on every attempt (relay.webhooks.custom_headers); never logged.
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Attempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One delivery attempt, as logged."""

    attempt: int
    at: int  # ms since the epoch
    status_code: int | None
    error: str | None
    duration_ms: float
    response: str = ""
    series: int = 1
    event_type: str | None = None  # set on the run.started lane's attempts only


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as read back: the document plus its mutable fields."""

    doc: SubscriptionDoc
    state: SubState
    updated_at: int
    next_attempt_at: int | None
    attempts_in_series: int
    series: int
    event_type: str | None
    run_status: str | None
    attempts: tuple[Attempt, ...] = ()


def fresh_subscription(doc: SubscriptionDoc, run_status: str | None) -> Subscription:
    """A subscription as just registered: watching, updated at its creation, no attempts."""
    return Subscription(
        doc=doc,
        state=SubState.WATCHING,
        updated_at=doc.created_at,
        next_attempt_at=None,
        attempts_in_series=0,
        series=1,
        event_type=None,
        run_status=run_status,
    )


class WatchFailure(msgspec.Struct, frozen=True):
    """Why a watch ended without a terminal status."""

    code: FailureCode
    message: str


class CachedResult(msgspec.Struct, frozen=True):
    """The last Intuned result body the relay holds for a run, and when it was fetched (ms)."""

    body: bytes
    fetched_at: int


ATTEMPT_DECODER: Final = msgspec.json.Decoder(Attempt)


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return int(time.time() * 1000)


@functools.lru_cache(maxsize=256)
def utc_second(second: int) -> str:
    """A Unix second as RFC 3339 UTC date and time, without fraction or zone
    (``2026-11-30T10:00:00``): each second formatted once, as the timestamps of one answer or
    one burst of log lines mostly share a few seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def new_subscription_id() -> str:
    """A fresh, unguessable subscription id."""
    return "sub_" + secrets.token_urlsafe(16)


def run_key(project_name: str, run_id: str) -> str:
    """The identity of one watched run: project and run, each percent-encoded. The workspace
    is the deployment's one ``INTUNED_WORKSPACE_ID``, not part of it (nor stored per run)."""
    return "/".join(quote(part, safe="") for part in (project_name, run_id))


def event_type_for(status: str | None, failed: bool) -> str:
    """``run.<status>`` for a terminal status, ``run.watch_failed`` when the relay gave up."""
    return EventType.WATCH_FAILED if failed or status is None else f"run.{status}"
