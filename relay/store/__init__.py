"""The relay's state in Redis, split by the clients it serves.

    keys.py           every key and hash field, named once (hash tags per run/subscription/client)
    lua/*.lua         the atomic transitions; each declares its keys, answers a map
    scripts.py        loading and calling the scripts; maps decoded into Structs
    subscriptions.py  the API side: register, read, list, cancel, redeliver, run reads
    watches.py        the poll side: claim, record, fan-out in batches
    deliveries.py     the delivery side: claim, record, defer, per-minute counters
    secrets.py        signing secrets (created by the API only)
    controls.py       the client controls: operational webhook, quotas, incidents, bulk redeliver
    starts.py         start-and-watch: Idempotency-Key records, push tokens, push fields
    housekeeping.py   sweep and prune in bounded slices from saved cursors, gauges

``Stores.open`` builds every side over one Redis client. This package must never make HTTP
calls or decide scheduling policy (callers pass delays; Redis's clock stamps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from relay.model import Attempt, DeliveryOutcome, WatchFailure
from relay.settings import Settings
from relay.store.controls import ControlStore, OperationalHook, RedeliverQuery
from relay.store.deliveries import DeliveryStore
from relay.store.docs import decode_cursor, encode_cursor, idempotency_field
from relay.store.housekeeping import Housekeeping
from relay.store.keys import run_digest
from relay.store.secrets import SecretStore
from relay.store.starts import StartStore
from relay.store.subscriptions import SubscriptionStore
from relay.store.types import (
    AttemptRecorded,
    ClaimedDelivery,
    ClaimedPoll,
    EventSource,
    FanOutStep,
    Page,
    PollRecorded,
    Registration,
    RunWatch,
)
from relay.store.watches import WatchStore

__all__ = [
    "AttemptRecorded",
    "ClaimedDelivery",
    "ClaimedPoll",
    "ControlStore",
    "DeliverySide",
    "DeliveryStore",
    "EventSource",
    "Housekeeping",
    "OperationalHook",
    "Page",
    "PollSide",
    "RedeliverQuery",
    "Registration",
    "RunWatch",
    "SecretStore",
    "StartStore",
    "Stores",
    "SubscriptionStore",
    "WatchStore",
    "decode_cursor",
    "encode_cursor",
    "idempotency_field",
    "run_digest",
]


class PollSide(Protocol):
    """What the poll pump needs."""

    async def claim_polls(self, limit: int) -> list[ClaimedPoll]: ...
    async def claim_poll(self, rd: str) -> ClaimedPoll | None: ...
    async def record_result(
        self, rd: str, status: str, body: bytes, delay_ms: int, interval: float
    ) -> PollRecorded: ...
    async def record_poll_error(
        self, rd: str, delay_ms: int, interval: float, *, not_found: bool
    ) -> PollRecorded: ...
    async def record_watch_failure(self, rd: str, failure: WatchFailure) -> PollRecorded: ...
    async def fan_out(self, rd: str, batch: int = ...) -> FanOutStep: ...
    async def fan_out_all(self, rd: str) -> int: ...
    async def next_due_in(self) -> int | None: ...


class DeliverySide(Protocol):
    """What the delivery pump needs."""

    async def claim_deliveries(
        self, limit: int, only: str | None = None
    ) -> list[ClaimedDelivery]: ...
    async def record_attempt(
        self, claim: ClaimedDelivery, attempt: Attempt, outcome: DeliveryOutcome, delay_ms: int
    ) -> AttemptRecorded: ...
    async def next_due_in(self) -> int | None: ...


@dataclass(frozen=True)
class Stores:
    """Every side of the store over one Redis client."""

    subscriptions: SubscriptionStore
    watches: WatchStore
    deliveries: DeliveryStore
    secrets: SecretStore
    housekeeping: Housekeeping
    controls: ControlStore
    starts: StartStore

    @classmethod
    def open(cls, redis: Redis, settings: Settings) -> Stores:
        """The sides, configured from ``settings`` (no I/O)."""
        ttl_ms, ws = int(settings.result_ttl * 1000), settings.intuned_workspace_id
        return cls(
            subscriptions=SubscriptionStore(
                redis,
                ttl_ms=ttl_ms,
                workspace_id=ws,
                max_per_client=settings.max_subscriptions_per_client,
                max_per_run=settings.max_subscriptions_per_run,
            ),
            watches=WatchStore(
                redis, ttl_ms=ttl_ms, lease_ms=int((settings.intuned_timeout * 2 + 5) * 1000)
            ),
            deliveries=DeliveryStore(
                redis,
                ttl_ms=ttl_ms,
                workspace_id=ws,
                lease_ms=int((settings.delivery_timeout * 2 + 5) * 1000),
            ),
            secrets=SecretStore(redis),
            housekeeping=Housekeeping(redis),
            controls=ControlStore(redis, ttl_ms=ttl_ms),
            starts=StartStore(redis, ttl_ms=ttl_ms),
        )
