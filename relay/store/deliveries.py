"""The delivery side of the store: lease due attempts, record them, defer, count.

A claim carries what the attempt reads (the run's one stored result, the secrets in force, the
watch failure copied onto the subscription); the webhook body is built from it, so no body is
stored per subscription. Leases and retry times are Redis's clock. The opt-in run.started
event has a lane of its own (its due set, state and attempt count on the subscription), so it
never holds up the terminal event. Attempts are counted per
client and minute (``delivery_counters``). Attempts finished while one record call is in flight
are recorded together in the next (a group commit, ``record_attempt``). This module must never
decide retry policy or make HTTP calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from redis.asyncio import Redis

from relay.model import (
    Attempt,
    CachedResult,
    DeliveryOutcome,
    FailureCode,
    Lane,
    WatchFailure,
)
from relay.store import keys
from relay.store.docs import doc_of
from relay.store.scripts import GroupCommit, Script, decode_map, group_results, pack, r
from relay.store.subscriptions import cached_result
from relay.store.types import (
    AttemptRecorded,
    AttemptToRecord,
    ClaimedDelivery,
    ClaimReply,
    ClaimRow,
    DeferArgs,
    DeferReply,
    RecordReply,
)
from relay.store.watches import due_in, redis_now

ATTEMPT_LOG_MAX: Final = 50
ROTATION_OVERLAP_MS: Final = 24 * 3600 * 1000
COUNTER_TTL_MS: Final = 2 * 3600 * 1000 + 5 * 60 * 1000
MINUTE_MS: Final = 60_000
# A claim carries the run's result up to this size; a bigger one is read on its own (``result``)
CLAIM_RESULT_MAX: Final = 64 * 1024
# Attempts one record call writes at most (bounded work per script call: ~25 commands each).
RECORD_BATCH_MAX: Final = 64
# Deliveries one defer call moves at most (4 commands each).
DEFER_BATCH_MAX: Final = 256


def secrets_in_force(row: ClaimRow) -> tuple[str, ...]:
    """The current secret, plus the previous one within 24 h of the rotation."""
    out = [row.cur] if row.cur else []
    if row.prev and row.rot is not None and row.now - row.rot < ROTATION_OVERLAP_MS:
        out.append(row.prev)
    return tuple(out)


# Seam "claim as JSON" (bench/NOTES.md, issue 12 second pass): each claimed entry is one JSON
# document decoded by msgspec in one call, and the document built from it directly, instead
# of a flat map of ~40 values decoded field by field and a field dict; the result (a run's
# body) travels beside it as bytes. Buys ~5 % of the instructions per delivery (worker + Redis).
_CLAIM_ROW: Final = msgspec.json.Decoder(ClaimRow, strict=False)
_CLAIM_BYTES: Final = frozenset({"claim", "result"})
_COUNTER_FIELDS: Final = [keys.CounterField.DELIVERED, keys.CounterField.FAILED]


def claimed(row: ClaimRow, workspace_id: str, result: bytes | None) -> ClaimedDelivery | None:
    """A ClaimedDelivery from a claim map and the result beside it (None when the hash lost
    its document)."""
    doc = doc_of(
        row.id,
        workspace_id,
        callback=row.cb,
        rk=row.rk,
        client=row.cl,
        created=row.ca,
        events=row.ev,
        metadata=row.md.encode() if row.md else None,
        headers=row.hd,
    )
    if doc is None:
        return None
    return ClaimedDelivery(
        subscription_id=row.id,
        doc=doc,
        attempts_in_series=row.n,
        series=row.ser,
        event_type=row.et,
        occurred_at=row.ta,
        run_digest=keys.run_digest(row.rk),
        now=row.now,
        result=result if row.result_state is keys.ResultRide.CARRIED else None,
        result_known=row.result_state is not keys.ResultRide.BIG,
        secrets=secrets_in_force(row),
        failure=WatchFailure(FailureCode(row.fc), row.fm or "") if row.fc else None,
        lane=row.lane,
    )


def due_set(lane: Lane) -> str:
    """The due set of a delivery lane."""
    return keys.DUE_NOTICE if lane is Lane.STARTED else keys.DUE_DELIVERY


class DeliveryStore:
    """What the delivery pump and the deliver-now job use."""

    def __init__(
        self, redis: Redis, *, ttl_ms: int, workspace_id: str, lease_ms: int = 35_000
    ) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.workspace_id = workspace_id  # the documents' (not stored per subscription)
        self.lease_ms = lease_ms
        self._claim = Script(redis, "claim_deliveries")
        self._claim_notices = Script(redis, "claim_notices")
        self._record = Script(redis, "record_attempts")
        # Seam "group commit" (bench/NOTES.md, 2026-11-30): one script call and one round trip
        # for the attempts that finish while the previous call is in flight, instead of one
        # call each; the counters of a client's minute are written once per call.
        self._attempts = GroupCommit(self._record_many, RECORD_BATCH_MAX)
        self._defer = Script(redis, "defer")
        # Seam "deferrals grouped" (bench/NOTES.md, session 27): a black hole's backlog is put
        # back one claimed delivery at a time; the deferrals made while a call is in flight go
        # in the next one instead of one call each. On a worker short of CPU it took the
        # fairness row from 0.64-0.75 to 0.99-1.02.
        self._defers = GroupCommit(self._defer_many, DEFER_BATCH_MAX)

    async def claim_deliveries(self, limit: int, only: str | None = None) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due delivery attempts (or just ``only`` if it is due)."""
        args: list[str | int] = [limit, self.lease_ms, CLAIM_RESULT_MAX]
        return await self._lease(self._claim, Lane.TERMINAL, args, only)

    async def claim_notices(self, limit: int, only: str | None = None) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due run.started attempts (or just ``only`` if it is due)."""
        return await self._lease(self._claim_notices, Lane.STARTED, [limit, self.lease_ms], only)

    async def _lease(
        self, script: Script, lane: Lane, args: list[str | int], only: str | None
    ) -> list[ClaimedDelivery]:
        """Run a lane's claim script (``only``: just that subscription, if due)."""
        rows = await script([due_set(lane)], [*args, only] if only is not None else args)
        replies = [decode_map(row, ClaimReply, _CLAIM_BYTES) for row in rows]
        out = [claimed(_CLAIM_ROW.decode(c.claim), self.workspace_id, c.result) for c in replies]
        return [c for c in out if c is not None]

    async def result(self, rd: str) -> CachedResult | None:
        """The run's stored result (for a claim whose result was too big to carry)."""
        return await cached_result(self.redis, rd)

    async def record_attempt(
        self, claim: ClaimedDelivery, attempt: Attempt, outcome: DeliveryOutcome, delay_ms: int
    ) -> AttemptRecorded:
        """Log an attempt and move the subscription on (a retry is due ``delay_ms`` from
        Redis's now); counts it in the client's per-minute counters. Recorded with the other
        attempts that finish while a record call is in flight; a failed call fails each of them
        (their leases bring them back)."""
        item = AttemptToRecord(
            sid=claim.subscription_id,
            series=claim.series,
            lane=claim.lane,
            attempt=msgspec.json.encode(attempt).decode(),
            outcome=outcome,
            delay_ms=delay_ms,
            rd=claim.run_digest,
            rid=keys.run_id_digest(claim.doc.run_id),
        )
        return await self._attempts.submit(item)

    async def _record_many(self, items: list[AttemptToRecord]) -> list[AttemptRecorded | Exception]:
        """One ``record_attempts`` call for ``items``: one result per item, in order."""
        # Seam "attempt record arguments packed" (bench/NOTES.md, issue 12 fifth pass): every
        # attempt's arguments go as one msgpack argument for the whole call (packed by msgspec
        # in C) instead of eight each, which redis-py packs one by one in Python.
        packed = pack(items)
        args: list[int | bytes] = [self.ttl_ms, ATTEMPT_LOG_MAX, COUNTER_TTL_MS, packed]
        return group_results(
            await self._record([], args),  # each attempt's keys: named by the script
            RecordReply,
            lambda reply: AttemptRecorded(state=reply.state, next=reply.next, stale=reply.stale),
        )

    async def release_deliveries(self, sids: Sequence[str], lane: Lane = Lane.TERMINAL) -> None:
        """Hand leased deliveries back (a stopping worker): due again now (Redis's clock)."""
        if sids:
            now = await redis_now(self.redis)
            await r(self.redis.zadd(due_set(lane), dict.fromkeys(sids, now), xx=True))

    async def defer_deliveries(
        self, sids: Sequence[str], until_ms: int, lane: Lane = Lane.TERMINAL
    ) -> int:
        """Push leased or due deliveries to ``until_ms`` without counting an attempt (a host's
        cap, a circuit breaker's pause); returns how many moved. They go with the other
        deferrals made meanwhile (a group commit of at most ``DEFER_BATCH_MAX`` a call)."""
        return sum(await self._defers.submit_all([DeferArgs(s, lane, until_ms) for s in sids]))

    async def _defer_many(self, items: list[DeferArgs]) -> list[bool | Exception]:
        """One ``defer`` call for ``items``: whether each moved, in order."""
        rows = await self._defer([], [pack(items)])  # keys: named by the script
        return group_results(rows, DeferReply, lambda reply: reply.deferred)

    async def delivery_counters(self, client: str, minutes: int = 60) -> list[tuple[int, int, int]]:
        """(minute ms, delivered, failed) for the client's last ``minutes`` minutes, oldest
        first (Redis's clock; minutes without attempts are zeros)."""
        now = await redis_now(self.redis)
        last = now - now % MINUTE_MS
        starts = [last - i * MINUTE_MS for i in range(minutes - 1, -1, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hmget(keys.counters(client, start), _COUNTER_FIELDS)
            rows = await pipe.execute()
        return [(s, int(d or 0), int(f or 0)) for s, (d, f) in zip(starts, rows, strict=True)]

    async def next_due_in(self) -> int | None:
        """Milliseconds until the earliest delivery is due (Redis's clock), None when none."""
        return await due_in(self.redis, keys.DUE_DELIVERY)

    async def next_notice_due_in(self) -> int | None:
        """Milliseconds until the earliest run.started attempt is due, None when none."""
        return await due_in(self.redis, keys.DUE_NOTICE)
