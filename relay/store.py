"""Every Redis key and atomic transition of the relay (the scripts live in ``store_scripts``).

The API and the workers call these methods and never name a key themselves. Methods take and
return msgspec Structs or plain values; scheduling policy (when to poll or retry) is decided by
the caller and passed in as timestamps. This module must never make HTTP calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from relay import store_scripts as lua
from relay.model import (
    ATTEMPT_DECODER,
    Attempt,
    CachedResult,
    FailureCode,
    Subscription,
    SubscriptionDoc,
    SubState,
    WatchFailure,
    run_key,
)

DUE_POLL: Final = "r:due:poll"
DUE_DELIVERY: Final = "r:due:dlv"
ATTEMPT_LOG_MAX: Final = 50
ROTATION_OVERLAP_MS: Final = 24 * 3600 * 1000
# A claimed delivery carries the cached result it is built from up to this size; a bigger one
# (Intuned results can be megabytes) is fetched on its own, so a claim of 256 stays small.
CLAIM_RESULT_MAX: Final = 64 * 1024
T = TypeVar("T")


async def _r(value: Awaitable[T] | T) -> T:
    """Await a redis-py reply (its asyncio methods are typed as sync-or-async)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _sub(sid: str) -> str:
    return f"r:s:{sid}"


def _watch(rk: str) -> str:
    return f"r:w:{rk}"


def _s(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class Registration(msgspec.Struct, frozen=True):
    """What registering a subscription did: ``action`` is poll|join|deliver|skip|existing.

    For poll and join the new subscription is exactly the document written, state watching,
    updated at its creation, no attempts; ``run_status`` is then the run's last seen status.
    """

    subscription_id: str
    created: bool
    action: str
    run_status: str | None = None


class QueuedJob(msgspec.Struct, frozen=True):
    """An arq job, serialized, to enqueue the way ``ArqRedis.enqueue_job`` does."""

    job_key: str
    result_key: str
    queue: str
    expires_ms: int
    payload: bytes
    score: int
    job_id: str


class ClaimedPoll(msgspec.Struct, frozen=True):
    """A run whose poll is due, leased to the claiming worker."""

    run_key: str
    project_name: str
    run_id: str
    interval: float
    first_seen: int
    not_found_since: int | None


class ClaimedDelivery(msgspec.Struct, frozen=True):
    """A subscription whose delivery attempt is due, leased to the claiming worker.

    The claim also carries what the attempt reads (one round trip instead of four): the stored
    event body, or else the cached Intuned result it is built from (``result_known`` False when
    the result was too big to carry and must be fetched), the signing secrets in force at claim
    time, and the watch failure of a ``run.watch_failed`` event.
    """

    subscription_id: str
    doc: SubscriptionDoc
    attempts_in_series: int
    series: int
    event_type: str
    occurred_at: int
    run_key: str
    body: bytes | None = None
    result: bytes | None = None
    result_known: bool = False
    secrets: tuple[str, ...] = ()
    failure: WatchFailure | None = None


class RunWatch(msgspec.Struct, frozen=True):
    """A read-only view of one run's watch record."""

    state: str
    status: str | None
    polls: int
    first_seen: int
    next_poll: int | None
    errors: int
    failure: WatchFailure | None


class Page(msgspec.Struct, frozen=True):
    """One page of a client's subscriptions, newest first."""

    items: list[Subscription]
    next_cursor: str | None


# The subscription hash's fields that hold its document, in CLAIM_DELIVERIES's order.
_CLAIM_DOC_FIELDS: Final = (b"rk", b"cl", b"cb", b"md", b"ev", b"ca", b"dx")
_EMPTY_METADATA: Final = b"{}"


def _doc_fields(doc: SubscriptionDoc, rk: str) -> list[str | bytes]:
    """The document as short hash fields (field, value, ...): every value usually stays under
    Redis's 64-byte listpack limit, so a subscription costs ~300 bytes instead of ~950."""
    out: list[str | bytes] = ["cb", doc.callback_url]
    metadata = bytes(doc.metadata)
    if metadata != _EMPTY_METADATA:
        out += ["md", metadata]
    if run_key(doc.workspace_id, doc.project_name, doc.run_id) != rk:
        out += ["dx", msgspec.json.encode([doc.workspace_id, doc.project_name, doc.run_id])]
    return out


def _doc_from(sid: str, f: Mapping[bytes, bytes | None]) -> SubscriptionDoc | None:
    """The document of a subscription hash; None when it has none."""
    callback, rk, client, created = f.get(b"cb"), f.get(b"rk"), f.get(b"cl"), f.get(b"ca")
    if not callback or not rk or not client or not created:
        return None
    dx = f.get(b"dx")
    if dx:
        workspace, project, run_id = msgspec.json.decode(dx, type=tuple[str, str, str])
    else:
        workspace, project, run_id = (unquote(part) for part in rk.decode().split("/"))
    events = (f.get(b"ev") or b"").decode().strip("|")
    return SubscriptionDoc(
        id=sid,
        client=client.decode(),
        workspace_id=workspace,
        project_name=project,
        run_id=run_id,
        callback_url=callback.decode(),
        events=tuple(e for e in events.split("|") if e),
        metadata=msgspec.Raw(f.get(b"md") or _EMPTY_METADATA),
        created_at=int(created),
    )


def _secrets_in_force(
    cur: bytes | None, prev: bytes | None, rot: bytes | None, now: int
) -> list[str]:
    """The current secret, plus the previous one within 24 h of the rotation."""
    out = [cur.decode()] if cur else []
    if prev and rot and now - int(rot) < ROTATION_OVERLAP_MS:
        out.append(prev.decode())
    return out


def idempotency_field(project_name: str, run_id: str, callback_url: str) -> str:
    """The fingerprint under which a client's identical registration is found again."""
    raw = "\x00".join((project_name, run_id, callback_url)).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class _Batcher:
    """Script calls made in the same event-loop pass share one pipelined round trip.

    A busy worker finishes many polls or attempts per pass; recording each with its own
    EVALSHA costs a write syscall, a connection check-out and a read per call. Each script
    still runs atomically on its own (the pipeline is not a transaction), and each caller gets
    its own result or exception.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]] = []

    async def call(self, script: AsyncScript, args: list[Any]) -> Any:
        """Run ``script`` with ``args`` (in a batch with whatever else is due now)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        batch, self._pending = self._pending, []
        _background.add(task := asyncio.ensure_future(self._flush(batch)))
        task.add_done_callback(_background.discard)

    async def _flush(self, batch: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            script, args, future = batch[0]
            try:
                _settle(future, await script(args=args))
            except Exception as exc:  # handed to the caller, who awaits it
                _fail(future, exc)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, args, _ in batch:
                    pipe.evalsha(script.sha, 0, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the round trip failed: every caller sees it
            for _, _, future in batch:
                _fail(future, exc)
            return
        for (script, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # a restarted Redis forgot the script
                try:
                    result = await script(args=args)
                except Exception as exc:
                    result = exc
            if isinstance(result, Exception):
                _fail(future, result)
            else:
                _settle(future, result)


_background: set[asyncio.Future[None]] = set()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Store:
    """The relay's state in Redis: subscriptions, watches, cached results, due sets, secrets."""

    def __init__(self, redis: Redis, *, result_ttl: float) -> None:
        self.redis = redis
        self.ttl_ms = int(result_ttl * 1000)
        self._register = redis.register_script(lua.REGISTER)
        self._claim_polls = redis.register_script(lua.CLAIM_POLLS)
        self._claim_poll_one = redis.register_script(lua.CLAIM_POLL_ONE)
        self._record_poll = redis.register_script(lua.RECORD_POLL)
        self._claim_deliveries = redis.register_script(lua.CLAIM_DELIVERIES)
        self._record_attempt = redis.register_script(lua.RECORD_ATTEMPT)
        self._store_body = redis.register_script(lua.STORE_BODY)
        self._sweep_page = redis.register_script(lua.SWEEP_PAGE)
        self._redeliver = redis.register_script(lua.REDELIVER)
        self._cancel = redis.register_script(lua.CANCEL)
        self._prune = redis.register_script(lua.PRUNE_EXPIRED)
        self._batch = _Batcher(redis)

    # ---- registration and the client's view ---------------------------------------------

    async def register(
        self, doc: SubscriptionDoc, run_key: str, poll_job: QueuedJob | None = None
    ) -> Registration:
        """Store a subscription and join/start its run's watch, atomically (idempotent).

        ``poll_job`` is enqueued in the same script when the registration starts polling.
        """
        events = "|" + "|".join(doc.events) + "|"
        job = poll_job
        res = await self._register(
            keys=[job.job_key, job.result_key, job.queue] if job else [],
            args=[
                doc.id,
                doc.client,
                run_key,
                idempotency_field(doc.project_name, doc.run_id, doc.callback_url),
                "",
                events,
                doc.created_at,
                doc.project_name,
                doc.run_id,
                self.ttl_ms,
                *((job.expires_ms, job.payload, job.score, job.job_id) if job else ("",) * 4),
                *_doc_fields(doc, run_key),
            ],
        )
        created, sid, action = res[:3]
        return Registration(
            subscription_id=_s(sid) or "",
            created=bool(created),
            action=_s(action) or "",
            run_status=_s(res[3]) if len(res) > 3 else None,
        )

    async def get_subscription(self, sid: str, client: str) -> Subscription | None:
        """The subscription with its attempt log, or None if absent or another client's."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(_sub(sid))
            pipe.lrange(_sub(sid) + ":a", 0, -1)
            fields, attempts = await pipe.execute()
        sub = self._decode_sub(sid, fields, attempts)
        if sub is None or sub.doc.client != client:
            return None
        return sub

    async def get_subscription_any(self, sid: str) -> Subscription | None:
        """The subscription regardless of its client (workers and tests)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(_sub(sid))
            pipe.lrange(_sub(sid) + ":a", 0, -1)
            fields, attempts = await pipe.execute()
        return self._decode_sub(sid, fields, attempts)

    def _decode_sub(
        self, sid: str, fields: dict[bytes, bytes], attempts: Sequence[bytes] = ()
    ) -> Subscription | None:
        doc = _doc_from(sid, fields) if fields and b"st" in fields else None
        if doc is None:
            return None
        na = fields.get(b"na")
        return Subscription(
            doc=doc,
            state=SubState(fields[b"st"].decode()),
            updated_at=int(fields.get(b"up", b"0")),
            next_attempt_at=int(na) if na else None,
            attempts_in_series=int(fields.get(b"n", b"0")),
            series=int(fields.get(b"ser", b"1")),
            event_type=_s(fields.get(b"et")),
            run_status=None,
            attempts=tuple(ATTEMPT_DECODER.decode(a) for a in attempts),
        )

    async def run_statuses(self, run_keys: Sequence[str]) -> list[str | None]:
        """The last Intuned status seen for each run (None when never fetched)."""
        if not run_keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for rk in run_keys:
                pipe.hget(_watch(rk), "s")
            values = await pipe.execute()
        return [_s(v) for v in values]

    async def list_subscriptions(
        self,
        client: str,
        *,
        state: SubState | None,
        limit: int,
        cursor: str | None,
        run_id: str | None = None,
    ) -> Page:
        """The client's subscriptions newest first, ``limit`` a page, from an opaque cursor."""
        key = f"r:c:{client}" if state is None else f"r:c:{client}:st:{state.value}"
        max_score, after = "+inf", None
        if cursor:
            max_score_i, after = decode_cursor(cursor)
            max_score = str(max_score_i)
        items: list[Subscription] = []
        last: tuple[int, str] | None = None
        batch = max(limit * 2, 50)
        exhausted = False
        while len(items) < limit and not exhausted:
            rows = await self.redis.zrevrangebyscore(
                key, max_score, "-inf", start=0, num=batch, withscores=True
            )
            exhausted = len(rows) < batch
            candidates: list[tuple[str, int]] = []
            for member, score in rows:
                sid, sc = member.decode(), int(score)
                if after is not None and sc == int(max_score) and sid >= after:
                    continue
                candidates.append((sid, sc))
            if not candidates:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid, _ in candidates:
                    pipe.hgetall(_sub(sid))
                found = await pipe.execute()
            stale: list[str] = []
            for (sid, sc), fields in zip(candidates, found, strict=True):
                last = (sc, sid)
                sub = self._decode_sub(sid, fields)
                if sub is None:
                    stale.append(sid)
                    continue
                if run_id is not None and sub.doc.run_id != run_id:
                    continue
                if state is not None and sub.state != state:
                    continue
                items.append(sub)
                if len(items) == limit:
                    break
            if stale:
                await self.redis.zrem(key, *stale)
            if last is None:
                break
            max_score, after = str(last[0]), last[1]
        more = len(items) == limit and last is not None
        if more and last is not None:
            more = bool(
                await self.redis.zrevrangebyscore(key, str(last[0]), "-inf", start=0, num=1)
            )
        return Page(items=items, next_cursor=encode_cursor(*last) if more and last else None)

    async def client_has_run(self, client: str, run_key: str) -> bool:
        """True when ``client`` has ever subscribed to the run (tenant check for reads)."""
        sids = await _r(self.redis.smembers(_watch(run_key) + ":s"))
        if not sids:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hget(_sub(sid.decode()), "cl")
            owners = await pipe.execute()
        return any(_s(o) == client for o in owners)

    async def cached_result(self, run_key: str) -> CachedResult | None:
        """The last Intuned body fetched for a run, with its fetch time."""
        body, fetched = await _r(self.redis.hmget(f"r:res:{run_key}", ["b", "t"]))
        if body is None:
            return None
        return CachedResult(body=bytes(body), fetched_at=int(fetched or 0))

    async def cancel(self, sid: str, client: str, now: int) -> bool:
        """Cancel a subscription (stops retries; stops polling when it was the last). False: 404."""
        res = await self._cancel(args=[sid, client, now, self.ttl_ms])
        return _s(res) == "ok"

    async def redeliver(self, sid: str, client: str, now: int) -> str:
        """Start a fresh attempt series: 'ok', 'not_found' or 'conflict:<state>'."""
        return _s(await self._redeliver(args=[sid, client, now])) or "not_found"

    async def event_body(self, sid: str) -> bytes | None:
        """The stored event body of a subscription (None before its first attempt)."""
        body = await _r(self.redis.get(_sub(sid) + ":b"))
        return bytes(body) if body is not None else None

    async def oldest_in_state(self, client: str, state: SubState) -> Subscription | None:
        """The client's earliest-created subscription in ``state`` (one index read, one hash)."""
        rows = await self.redis.zrange(f"r:c:{client}:st:{state.value}", 0, 0)
        if not rows:
            return None
        return await self.get_subscription(rows[0].decode(), client)

    # ---- the poll loop ---------------------------------------------------------------------

    async def claim_polls(self, now: int, limit: int, lease_ms: int) -> list[ClaimedPoll]:
        """Lease up to ``limit`` due polls."""
        flat = await self._claim_polls(args=[now, limit, lease_ms])
        return [
            _claimed_poll(_s(flat[i]) or "", flat[i + 1 : i + 6], now)
            for i in range(0, len(flat), 6)
        ]

    async def claim_poll(self, run_key: str, now: int, lease_ms: int) -> ClaimedPoll | None:
        """Lease one specific run's poll if it is due (used by the 'poll now' job)."""
        flat = await self._claim_poll_one(args=[run_key, now, lease_ms])
        return _claimed_poll(run_key, flat[1:], now) if flat else None

    async def _poll_outcome(
        self,
        run_key: str,
        now: int,
        kind: str,
        *,
        status: str = "",
        body: bytes = b"",
        next_due: int = 0,
        interval: float = 0.0,
        failure: WatchFailure | None = None,
        flag: bool = False,
    ) -> tuple[str, list[str]]:
        res = await self._batch.call(
            self._record_poll,
            [
                run_key,
                now,
                kind,
                status,
                body,
                next_due,
                interval,
                self.ttl_ms,
                failure.code.value if failure else "",
                failure.message if failure else "",
                "1" if flag else "0",
            ],
        )
        return _s(res[0]) or "", [_s(x) or "" for x in res[1:]]

    async def record_result(
        self, run_key: str, now: int, status: str, body: bytes, next_due: int, interval: float
    ) -> tuple[str, list[str]]:
        """Store a fetched result; on a terminal status fan out to the run's subscriptions."""
        return await self._poll_outcome(
            run_key, now, "result", status=status, body=body, next_due=next_due, interval=interval
        )

    async def record_poll_error(
        self, run_key: str, now: int, next_due: int, interval: float, *, not_found: bool
    ) -> None:
        """Count a failed poll and schedule the next one."""
        await self._poll_outcome(
            run_key, now, "error", next_due=next_due, interval=interval, flag=not_found
        )

    async def record_watch_failure(
        self, run_key: str, now: int, failure: WatchFailure, *, polled: bool
    ) -> tuple[str, list[str]]:
        """End a watch without a terminal status: every watching subscription gets watch_failed."""
        return await self._poll_outcome(run_key, now, "fail", failure=failure, flag=polled)

    async def get_watch(self, run_key: str) -> RunWatch | None:
        """The watch record of a run (None if never watched or expired)."""
        f = await _r(self.redis.hgetall(_watch(run_key)))
        if not f:
            return None
        fc = _s(f.get(b"fc"))
        np = f.get(b"np")
        return RunWatch(
            state=_s(f.get(b"st")) or "",
            status=_s(f.get(b"s")),
            polls=int(f.get(b"pc", b"0")),
            first_seen=int(f.get(b"fs", b"0")),
            next_poll=int(np) if np else None,
            errors=int(f.get(b"er", b"0")),
            failure=WatchFailure(FailureCode(fc), _s(f.get(b"fm")) or "") if fc else None,
        )

    # ---- deliveries ------------------------------------------------------------------------

    async def claim_deliveries(
        self, now: int, limit: int, lease_ms: int, only: str | None = None
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due delivery attempts (or just ``only`` if it is due)."""
        args: list[str | int] = [now, limit, lease_ms, CLAIM_RESULT_MAX]
        if only is not None:
            args.append(only)
        flat = await self._claim_deliveries(args=args)
        out: list[ClaimedDelivery] = []
        for i in range(0, len(flat), 19):
            sid_b, n, ser, et, ta, *doc_values = flat[i : i + 12]
            state, value, cur, prev, rot, fc, fm = flat[i + 12 : i + 19]
            sid = _s(sid_b) or ""
            doc = _doc_from(sid, dict(zip(_CLAIM_DOC_FIELDS, doc_values, strict=True)))
            if doc is None:  # a hash without its document: nothing to deliver
                continue
            out.append(
                ClaimedDelivery(
                    subscription_id=sid,
                    doc=doc,
                    attempts_in_series=int(n),
                    series=int(ser),
                    event_type=_s(et) or "",
                    occurred_at=int(ta),
                    run_key=_s(doc_values[0]) or "",
                    body=bytes(value) if state == b"body" else None,
                    result=bytes(value) if state == b"result" else None,
                    result_known=state != b"big",
                    secrets=tuple(_secrets_in_force(cur, prev, rot, now)),
                    failure=WatchFailure(FailureCode(fc.decode()), _s(fm) or "") if fc else None,
                )
            )
        return out

    async def store_event_body(self, sid: str, body: bytes) -> bytes:
        """Store the event body unless one exists; return the stored one (first writer wins)."""
        stored = await self._batch.call(self._store_body, [sid, body])
        return body if stored is None else bytes(stored)

    async def record_attempt(
        self, claim: ClaimedDelivery, attempt: Attempt, outcome: str, next_due: int, now: int
    ) -> str:
        """Log an attempt and move the subscription on; returns its state or 'stale'."""
        return (
            _s(
                await self._batch.call(
                    self._record_attempt,
                    [
                        claim.subscription_id,
                        claim.series,
                        msgspec.json.encode(attempt),
                        outcome,
                        next_due,
                        self.ttl_ms,
                        ATTEMPT_LOG_MAX,
                        now,
                    ],
                )
            )
            or "stale"
        )

    async def watch_failure(self, run_key: str) -> WatchFailure | None:
        """Why a run's watch failed, if it did."""
        fc, fm = await _r(self.redis.hmget(_watch(run_key), ["fc", "fm"]))
        if fc is None:
            return None
        return WatchFailure(FailureCode(fc.decode()), _s(fm) or "")

    # ---- signing secrets -------------------------------------------------------------------

    async def signing_secret(self, client: str, fresh: str) -> str:
        """The client's current secret, created from ``fresh`` on first use."""
        key = f"r:sec:{client}"
        await _r(self.redis.hsetnx(key, "cur", fresh))
        return _s(await _r(self.redis.hget(key, "cur"))) or fresh

    async def rotate_secret(self, client: str, fresh: str, now: int) -> str:
        """Make ``fresh`` the current secret; the old one keeps signing for 24 h."""
        key = f"r:sec:{client}"
        script = (
            "local cur = redis.call('HGET', KEYS[1], 'cur') "
            "if cur then redis.call('HSET', KEYS[1], 'prev', cur) end "
            "redis.call('HSET', KEYS[1], 'cur', ARGV[1], 'rot', ARGV[2]) return ARGV[1]"
        )
        await _r(self.redis.eval(script, 1, key, fresh, str(now)))
        return fresh

    async def signing_secrets(self, client: str, now: int) -> list[str]:
        """Secrets that sign a webhook now: the current one, plus the previous within 24 h."""
        cur, prev, rot = await _r(self.redis.hmget(f"r:sec:{client}", ["cur", "prev", "rot"]))
        return _secrets_in_force(cur, prev, rot, now)

    async def release_polls(self, run_keys: Sequence[str], now: int) -> None:
        """Hand leased polls back (a stopping worker): due again at ``now``."""
        if run_keys:
            await _r(self.redis.zadd(DUE_POLL, dict.fromkeys(run_keys, now), xx=True))

    async def release_deliveries(self, sids: Sequence[str], now: int) -> None:
        """Hand leased deliveries back (a stopping worker): due again at ``now``."""
        if sids:
            await _r(self.redis.zadd(DUE_DELIVERY, dict.fromkeys(sids, now), xx=True))

    # ---- housekeeping ----------------------------------------------------------------------

    async def next_due(self, kind: str) -> int | None:
        """The earliest due time in a due set ('poll' or 'delivery'), ms."""
        key = DUE_POLL if kind == "poll" else DUE_DELIVERY
        rows = await self.redis.zrange(key, 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None

    async def watched_runs(self) -> int:
        """How many runs are being polled (each watching run has exactly one due entry)."""
        return int(await _r(self.redis.zcard(DUE_POLL)))

    async def queue_depth(self, now: int) -> tuple[int, int]:
        """How many polls and deliveries are due now."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(DUE_POLL, "-inf", now)
            pipe.zcount(DUE_DELIVERY, "-inf", now)
            polls, deliveries = await pipe.execute()
        return int(polls), int(deliveries)

    async def sweep(self, now: int) -> tuple[int, int]:
        """Re-derive lost work: watching runs and delivering subscriptions missing a due entry."""
        # One script call per scanned page, not three round trips per key: at 100,000 watched
        # runs the per-key version kept a worker busy for most of every minute.
        fixed = {"poll": 0, "dlv": 0}
        for kind, match in (("poll", "r:w:*"), ("dlv", "r:s:*")):
            page: list[str] = []
            async for key in self.redis.scan_iter(match=match, count=500, _type="hash"):
                ident = key.decode()[4:]
                if kind == "poll" and ident.endswith(":s"):
                    continue
                page.append(ident)
                if len(page) >= 500:
                    fixed[kind] += int(await self._sweep_page(args=[now, kind, *page]))
                    page = []
            if page:
                fixed[kind] += int(await self._sweep_page(args=[now, kind, *page]))
        return fixed["poll"], fixed["dlv"]

    async def prune_expired(self, now: int, limit: int = 1000) -> int:
        """Drop index entries of expired subscriptions; returns how many were pruned."""
        total = 0
        while True:
            pruned = int(await self._prune(args=[now, limit]))
            total += pruned
            if pruned < limit:
                return total

    async def count_states(self, client: str) -> dict[str, int]:
        """How many of a client's subscriptions are in each state."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for st in SubState:
                pipe.zcard(f"r:c:{client}:st:{st.value}")
            counts = await pipe.execute()
        return {st.value: int(c) for st, c in zip(SubState, counts, strict=True)}


def _claimed_poll(run_key: str, values: Sequence[bytes | str | None], now: int) -> ClaimedPoll:
    """A ClaimedPoll from a claim script's ``p r iv fs nf`` values."""
    project, run_id, iv, fs, nf = (_s(x) or "" for x in values)
    return ClaimedPoll(
        run_key=run_key,
        project_name=project,
        run_id=run_id,
        interval=float(iv or 0),
        first_seen=int(fs or now),
        not_found_since=int(nf) if nf else None,
    )


def encode_cursor(score: int, sid: str) -> str:
    """An opaque pagination cursor: the last item's creation time and id."""
    return base64.urlsafe_b64encode(f"{score}:{sid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of ``encode_cursor``; raises ValueError on a malformed cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, _, sid = raw.partition(":")
        if not sid:
            raise ValueError("cursor has no id")
        return int(score), sid
    except (UnicodeDecodeError, ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise ValueError("malformed cursor") from exc
