"""The API side of the store: register, read, list, cancel, redeliver, and run reads.

Every call costs O(1) or O(page) or O(one client's subscriptions on one run) (bounded by
RELAY_MAX_SUBSCRIPTIONS_PER_RUN), never O(the client's subscriptions). This module must never
decide HTTP answers or scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from redis.asyncio import Redis

from relay.model import (
    CachedResult,
    ChangeOutcome,
    FailureCode,
    Subscription,
    SubscriptionDoc,
    SubState,
    WatchFailure,
    run_key,
)
from relay.store import keys
from relay.store.docs import (
    decode_cursor,
    doc_fields,
    encode_cursor,
    events_field,
    idempotency_field,
    subscription_from,
)
from relay.store.keys import ResultField, SubField, WatchField
from relay.store.scripts import Batcher, Script, decode_map, pack, r, text
from relay.store.types import (
    EventSource,
    ListedId,
    Outcome,
    Page,
    RegisterArgs,
    Registration,
)


class SubscriptionStore:
    """What ``/v1/subscriptions`` and ``/v1/runs`` read and write."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_ms: int,
        workspace_id: str,
        max_per_client: int,
        max_per_run: int,
    ) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.workspace_id = workspace_id  # the documents' (not stored per subscription)
        self.max_per_client = max_per_client
        self.max_per_run = max_per_run
        # Seam "registrations batched" (bench/NOTES.md, session 27): the REGISTER calls of one
        # event-loop pass share one pipelined round trip (each script still atomic on its
        # own): one socket write and read and one pooled connection for the pass instead of
        # each. With the API short of CPU it bought the registration row ~20 % (six pairs:
        # ratio medians 0.53 -> 0.65, p99 ratio 2.01 -> 1.63).
        self._register = Script(redis, "register", Batcher(redis))
        self._cancel = Script(redis, "cancel")
        self._redeliver = Script(redis, "redeliver")
        self._list_page = Script(redis, "list_page")

    async def register(
        self,
        doc: SubscriptionDoc,
        run_key: str,
        fresh_secret: str,
        *,
        fingerprint: str = "",
        owner_only: bool = False,
    ) -> Registration:
        """Store a subscription and join/start its run's watch, atomically (idempotent). Beyond
        a quota nothing is written (action quota_client / quota_run). The client's signing
        secret is created from ``fresh_secret`` when it has none. The same registration with
        another ``fingerprint`` is action conflict; with ``owner_only``, a run first registered
        by another client is action not_owner (nothing written either way)."""
        rd, client = keys.run_digest(run_key), doc.client
        crd = keys.run_id_digest(doc.run_id)
        args = RegisterArgs(
            sid=doc.id,
            client=client,
            run_key=run_key,
            rd=rd,
            idem=idempotency_field(doc.project_name, doc.run_id, doc.callback_url),
            events=events_field(doc.events),
            ttl_ms=self.ttl_ms,
            max_per_client=self.max_per_client,
            max_per_run=self.max_per_run,
            fresh_secret=fresh_secret,
            created=str(doc.created_at),
            fingerprint=fingerprint,
            owner_only=owner_only,
            crd=crd,
            fields=doc_fields(doc),
        )
        # Seam "register arguments packed" (bench/NOTES.md, session 26): one msgpack argument,
        # every key named by the script; ~17 % fewer API instructions per registration.
        reply = await self._register([], [pack(args)])
        return decode_map(reply, Registration)

    async def get_subscription(self, sid: str, client: str) -> Subscription | None:
        """The subscription with its attempt log, or None if absent or another client's."""
        sub = await self.get_subscription_any(sid)
        return sub if sub is not None and sub.doc.client == client else None

    async def get_subscription_any(self, sid: str) -> Subscription | None:
        """The subscription regardless of its client (workers and tests)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.sub(sid))
            pipe.lrange(keys.attempts(sid), 0, -1)
            fields, attempts = await pipe.execute()
        return subscription_from(sid, fields, self.workspace_id, tuple(attempts))

    async def run_statuses(self, run_keys: Sequence[str]) -> list[str | None]:
        """The last Intuned status seen for each run (None when never fetched)."""
        if not run_keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for rk in run_keys:
                pipe.hget(keys.watch(keys.run_digest(rk)), WatchField.STATUS.value)
            values = await pipe.execute()
        return [text(v) for v in values]

    async def _read(self, sids: Sequence[str]) -> list[Subscription | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(keys.sub(sid))
            found = await pipe.execute()
        ws = self.workspace_id
        return [subscription_from(sid, f, ws) for sid, f in zip(sids, found, strict=True)]

    async def list_subscriptions(
        self,
        client: str,
        *,
        state: SubState | None,
        limit: int,
        cursor: str | None,
        run_id: str | None = None,
    ) -> Page:
        """The client's subscriptions newest first (creation, then id), ``limit`` a page, from
        an opaque cursor; exact with any number of equal creation times."""
        after = decode_cursor(cursor) if cursor else None
        if run_id is not None:
            return await self._list_run(client, run_id, state, limit, after)
        # Every subscription is in exactly one state index: all of them is their merge.
        index = keys.client_states(client) if state is None else [keys.client_state(client, state)]
        items: list[Subscription] = []
        batch = max(limit, 50)
        while len(items) < limit:
            rows = [
                decode_map(row, ListedId)
                for row in await self._list_page(index, [batch, *(after if after else ("", ""))])
            ]
            if not rows:
                break
            subs = await self._read([row.id for row in rows])
            stale = [row.id for row, sub in zip(rows, subs, strict=True) if sub is None]
            for sub in subs:
                if sub is not None and (state is None or sub.state == state):
                    items.append(sub)
                    if len(items) == limit:
                        break
            if stale:  # expired but not pruned yet: drop from the indexes
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in index:
                        pipe.zrem(key, *stale)
                    await pipe.execute()
            after = (rows[-1].ca, rows[-1].id)
            if len(rows) < batch:
                break
        return _page(items, limit)

    async def _on_run(self, client: str, run_id: str) -> list[Subscription]:
        """The client's subscriptions on one run id (bounded by the per-run quota)."""
        crd = keys.run_id_digest(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.client_runs(client), crd)
            pipe.hvals(keys.client_run(client, crd))
            first, others = await pipe.execute()
        sids = list(dict.fromkeys(v.decode() for v in ([first] if first else []) + others))
        return [s for s in await self._read(sids) if s is not None and s.doc.run_id == run_id]

    async def _list_run(
        self,
        client: str,
        run_id: str,
        state: SubState | None,
        limit: int,
        after: tuple[int, str] | None,
    ) -> Page:
        subs = await self._on_run(client, run_id)
        subs.sort(key=lambda s: (s.doc.created_at, s.doc.id), reverse=True)
        items = [
            s
            for s in subs
            if (state is None or s.state == state)
            and (after is None or (s.doc.created_at, s.doc.id) < after)
        ][:limit]
        return _page(items, limit)

    async def client_has_run(self, client: str, run_key: str) -> bool:
        """True when ``client`` has a subscription on the run (tenant check for reads)."""
        subs = await self._on_run(client, unquote(run_key.rsplit("/", 1)[-1]))
        return any(_run_key_of(s) == run_key for s in subs)

    async def run_owner(self, run_key: str) -> str | None:
        """The client that registered the run first (its owner under RELAY_RUN_SHARING=owner)."""
        rd = keys.run_digest(run_key)
        return text(await r(self.redis.hget(keys.watch(rd), WatchField.OWNER.value)))

    async def cached_result(self, run_key: str) -> CachedResult | None:
        """The last Intuned body fetched for a run, with its fetch time."""
        return await cached_result(self.redis, keys.run_digest(run_key))

    async def cancel(self, sid: str, client: str) -> bool:
        """Cancel a subscription (stops retries; stops polling when it was the last). False: 404."""
        res = await self._cancel(
            [
                keys.sub(sid),
                keys.attempts(sid),
                keys.DUE_DELIVERY,
                keys.DUE_POLL,
                *keys.client_states(client),
            ],
            [sid, client, self.ttl_ms],
        )
        return decode_map(res, Outcome).outcome is ChangeOutcome.OK

    async def redeliver(self, sid: str, client: str) -> Outcome:
        """Start a fresh attempt series: outcome ok, not_found or conflict (with the state)."""
        res = await self._redeliver(
            [keys.sub(sid), keys.attempts(sid), keys.DUE_DELIVERY, *keys.client_states(client)],
            [sid, client, self.ttl_ms],
        )
        return decode_map(res, Outcome)

    async def oldest_in_state(self, client: str, state: SubState) -> Subscription | None:
        """The client's earliest-created subscription in ``state`` (one index entry, one read)."""
        rows = await r(self.redis.zrange(keys.client_state(client, state), 0, 0))
        return await self.get_subscription(rows[0].decode(), client) if rows else None

    async def event_source(self, sid: str, client: str) -> EventSource | None:
        """What the client's subscription's event body is built from; None before its run
        ended (no event yet), or when the subscription is absent or another client's."""
        fields = (SubField.CLIENT, SubField.EVENT_TYPE, SubField.OCCURRED, SubField.RUN_KEY)
        cl, et, ta, rk, fc, fm = await r(
            self.redis.hmget(
                keys.sub(sid),
                [
                    *(f.value for f in fields),
                    WatchField.FAIL_CODE.value,
                    WatchField.FAIL_MESSAGE.value,
                ],
            )
        )
        if text(cl) != client or not et or not ta:
            return None
        cached = await cached_result(self.redis, keys.run_digest(text(rk) or ""))
        return EventSource(
            event_type=text(et) or "",
            occurred_at=int(ta),
            failure=WatchFailure(FailureCode(text(fc) or ""), text(fm) or "") if fc else None,
            result=cached.body if cached is not None else None,
        )

    async def count_states(self, client: str) -> dict[str, int]:
        """How many of a client's subscriptions are in each state."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for st in SubState:
                pipe.zcard(keys.client_state(client, st))
            counts = await pipe.execute()
        return {st.value: int(c) for st, c in zip(SubState, counts, strict=True)}


def _run_key_of(sub: Subscription) -> str:
    return run_key(sub.doc.project_name, sub.doc.run_id)


def _page(items: list[Subscription], limit: int) -> Page:
    last = items[-1].doc if len(items) == limit else None
    return Page(items=items, next_cursor=encode_cursor(last.created_at, last.id) if last else None)


async def cached_result(redis: Redis, rd: str) -> CachedResult | None:
    """The run's stored Intuned body and its fetch time (Redis ms)."""
    body, fetched = await r(
        redis.hmget(keys.watch(rd), [ResultField.BODY.value, ResultField.FETCHED.value])
    )
    if body is None:
        return None
    return CachedResult(body=bytes(body), fetched_at=int(fetched or 0))
