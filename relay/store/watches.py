"""The poll side of the store: lease due polls, record outcomes, fan an ended run out.

Due times and leases are Redis's clock (``TIME`` in the scripts): callers pass delays, never
timestamps, so a worker with a skewed clock can neither steal a lease nor starve. Fan-out moves
at most ``FANOUT_BATCH`` subscribers per script call from a cursor saved in the watch. This
module must never decide when to poll (``relay.policy`` does) or make HTTP calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from redis.asyncio import Redis

from relay.model import TERMINAL_STATUSES, FailureCode, PollKind, WatchFailure, WatchState
from relay.store import keys
from relay.store.keys import WatchField
from relay.store.scripts import (
    Batcher,
    GroupCommit,
    Script,
    decode_map,
    group_members,
    pack,
    r,
    text,
)
from relay.store.types import (
    ClaimedPoll,
    FanOutStep,
    NoticeStep,
    PollArgs,
    PollClaims,
    PollRecorded,
    PollReplies,
    PollToRecord,
    RunWatch,
)

FANOUT_BATCH: Final = 100  # subscribers per script call (~10 commands each; bench/NOTES.md)
RECORD_POLLS_MAX: Final = 64  # polls one group-commit call records at most (~8 commands each)
POLL_WRITES: Final = 2  # poll record calls in flight at once (one made polls wait: NOTES.md)
# Seam "poll claim as JSON" (bench/NOTES.md, issue 12 third pass): a poll claim answers one
# JSON map of every leased run, and a poll record one of every poll's outcome, each decoded in
# one msgspec call, instead of a flat map per run decoded value by value (``decode_map``) and
# parsed element by element from RESP. Buys ~6 % of the instructions per poll (worker + Redis).
_POLL_CLAIMS: Final = msgspec.json.Decoder(PollClaims, strict=False)
_POLL_REPLIES: Final = msgspec.json.Decoder(PollReplies, strict=False)


class WatchStore:
    """What the poll pump and the first-poll job use."""

    def __init__(self, redis: Redis, *, ttl_ms: int, lease_ms: int = 25_000) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.lease_ms = lease_ms
        batcher = Batcher(redis)
        self._claim = Script(redis, "claim_polls")
        self._record = Script(redis, "record_poll", batcher)
        # Batched with the records: a terminal poll's record and its first fan-out step ride
        # one pipelined round trip, in that order (``workers.polling``).
        self._fan_out = Script(redis, "fan_out", batcher)
        self._fan_out_notices = Script(redis, "fan_out_notices")
        # Seam "poll group commit" (bench/NOTES.md, 2026-11-30): a poll that does not end its
        # run is recorded with the others that finish while a record call is in flight, in one
        # call; a run's end keeps the batched single call (pipelined with its first fan-out).
        self._record_group = Script(redis, "record_poll")
        self._polls = GroupCommit(self._record_many, RECORD_POLLS_MAX, depth=POLL_WRITES)

    async def claim_polls(self, limit: int) -> list[ClaimedPoll]:
        """Lease up to ``limit`` due polls or fan-outs."""
        return _POLL_CLAIMS.decode(await self._claim([keys.DUE_POLL], [limit, self.lease_ms])).polls

    async def claim_poll(self, rd: str) -> ClaimedPoll | None:
        """Lease one run's poll if it is due (the first-poll job)."""
        reply = _POLL_CLAIMS.decode(await self._claim([keys.DUE_POLL], [1, self.lease_ms, rd]))
        return reply.polls[0] if reply.polls else None

    async def _poll(self, args: PollArgs, body: bytes = b"") -> PollRecorded:
        item = PollToRecord(args=args, body=body)
        if args.kind is PollKind.FAIL or (
            args.kind is PollKind.RESULT and args.status in TERMINAL_STATUSES
        ):
            [one] = await self._record_calls(self._record, [item])
        else:
            one = await self._polls.submit(item)
        if isinstance(one, Exception):
            raise one
        return one

    async def _record_many(self, items: list[PollToRecord]) -> list[PollRecorded | Exception]:
        return await self._record_calls(self._record_group, items)

    async def _record_calls(
        self, script: Script, items: list[PollToRecord]
    ) -> list[PollRecorded | Exception]:
        """One ``record_poll`` call for ``items``: one result per item, in order."""
        bodies = [it.body for it in items]  # each poll's keys: named by the script
        # Seam "poll record arguments packed" (bench/NOTES.md, issue 12 fourth pass): every
        # poll's arguments but its body go as one msgpack argument for the whole call (packed
        # by msgspec in C) instead of eight each, which redis-py packs one by one in Python.
        packed = pack([it.args for it in items])
        return group_members(
            _POLL_REPLIES.decode(await script([], [self.lease_ms, packed, *bodies])).replies,
            lambda reply: PollRecorded(outcome=reply.outcome, now=reply.now, notices=reply.notices),
        )

    async def record_result(
        self, rd: str, status: str, body: bytes, delay_ms: int, interval: float
    ) -> PollRecorded:
        """Store a fetched result once for the run; a terminal status ends the watch (then
        call ``fan_out`` until done)."""
        iv = interval_field(interval)
        args = PollArgs(rd, PollKind.RESULT, status=status, delay_ms=int(delay_ms), iv=iv)
        return await self._poll(args, body)

    async def record_poll_error(
        self, rd: str, delay_ms: int, interval: float, *, not_found: bool
    ) -> PollRecorded:
        """Count a failed poll and schedule the next one ``delay_ms`` from Redis's now."""
        iv = interval_field(interval)
        args = PollArgs(rd, PollKind.ERROR, delay_ms=int(delay_ms), iv=iv, not_found=not_found)
        return await self._poll(args)

    async def record_watch_failure(self, rd: str, failure: WatchFailure) -> PollRecorded:
        """End a watch without a terminal status (then call ``fan_out`` until done)."""
        return await self._poll(
            PollArgs(rd, PollKind.FAIL, code=failure.code.value, message=failure.message)
        )

    async def fan_out(self, rd: str, batch: int = FANOUT_BATCH) -> FanOutStep:
        """Move the next batch of an ended run's watching subscribers to delivery."""
        res = await self._fan_out(
            [keys.watch(rd), keys.subscribers(rd), keys.DUE_POLL], [rd, self.ttl_ms, batch]
        )
        return decode_map(res, FanOutStep)

    async def fan_out_notices(self, rd: str, batch: int = FANOUT_BATCH) -> NoticeStep:
        """Make the next batch of a run's run.started subscribers due (see ``PollRecorded``)."""
        res = await self._fan_out_notices([keys.watch(rd), keys.starters(rd)], [batch])
        return decode_map(res, NoticeStep)

    async def fan_out_all(self, rd: str) -> int:
        """Run ``fan_out`` to the end; returns how many subscriptions started delivering."""
        delivering = 0
        while True:
            step = await self.fan_out(rd)
            delivering += step.delivering
            if step.done:
                return delivering

    async def get_watch(self, rd: str) -> RunWatch | None:
        """The watch record of a run (None if never watched or expired)."""
        names = [f.value for f in WatchField]
        values = await r(self.redis.hmget(keys.watch(rd), names))  # not the stored result
        f = {k: text(v) or "" for k, v in zip(names, values, strict=True) if v is not None}
        if WatchField.STATE not in f:
            return None
        fc = f.get(WatchField.FAIL_CODE)
        np = (
            await r(self.redis.zscore(keys.DUE_POLL, rd))
            if f[WatchField.STATE] == WatchState.WATCHING
            else None
        )
        return RunWatch(
            state=WatchState(f[WatchField.STATE]),
            status=f.get(WatchField.STATUS),
            first_seen=int(f.get(WatchField.FIRST_SEEN, "0")),
            next_poll=int(np) if np else None,
            errors=int(f.get(WatchField.ERRORS, "0")),
            failure=WatchFailure(FailureCode(fc), f.get(WatchField.FAIL_MESSAGE, ""))
            if fc
            else None,
            pending=int(f.get(WatchField.PENDING, "0")),
        )

    async def release_polls(self, rds: Sequence[str]) -> None:
        """Hand leased polls back (a stopping worker): due again now (Redis's clock)."""
        if rds:
            now = await redis_now(self.redis)
            await r(self.redis.zadd(keys.DUE_POLL, dict.fromkeys(rds, now), xx=True))

    async def next_due_in(self) -> int | None:
        """Milliseconds until the earliest poll is due (Redis's clock), None when none."""
        return await due_in(self.redis, keys.DUE_POLL)


def interval_field(seconds: float) -> str:
    """A poll interval as stored: to the ms, in its shortest form ("3", not "3.0", which Redis
    keeps as an integer; every watched run stores one)."""
    return f"{round(seconds, 3):g}"


async def redis_now(redis: Redis) -> int:
    """Redis's clock, ms."""
    sec, usec = await r(redis.time())
    return int(sec) * 1000 + int(usec) // 1000


async def due_in(redis: Redis, due_set: str) -> int | None:
    """Milliseconds until the earliest entry of a due set (0 when overdue), by Redis's clock."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(due_set, 0, 0, withscores=True)
        (sec, usec), rows = await pipe.execute()
    if not rows:
        return None
    return max(0, int(rows[0][1]) - (int(sec) * 1000 + int(usec) // 1000))
