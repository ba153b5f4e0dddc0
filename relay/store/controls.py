"""The store's side for the client controls (contract §6): the operational webhook, per-client
quotas, incidents and bulk redeliver in bounded batches.

Every call is O(1) or O(one batch). Header values are stored here but never logged. This
module must never make HTTP calls or decide scheduling.
"""

from __future__ import annotations

from typing import Final

import msgspec
from redis.asyncio import Redis

from relay.model import SubState
from relay.store import keys
from relay.store.keys import OpsField
from relay.store.scripts import Script, decode_map, r, text
from relay.store.types import BatchRedelivered, QuotaUse

_HEADERS: Final = msgspec.json.Decoder(dict[str, str])


class OperationalHook(msgspec.Struct, frozen=True, kw_only=True):
    """A client's operational webhook as stored."""

    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class RedeliverQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which of a client's subscriptions a bulk redeliver takes (None: any)."""

    state: SubState
    run_id: str | None = None
    host: str | None = None  # lower-case, without brackets or port
    since_ms: int | None = None  # updatedAt >= since
    until_ms: int | None = None  # updatedAt <= until


class ControlStore:
    """What the control routes and the operational alerts read and write."""

    def __init__(self, redis: Redis, *, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self._quota = Script(redis, "quota")
        self._redeliver_batch = Script(redis, "redeliver_batch")

    async def operational_webhook(self, client: str) -> OperationalHook | None:
        """The client's operational webhook, or None."""
        url, headers = await r(
            self.redis.hmget(keys.operational(client), [OpsField.URL.value, OpsField.HEADERS.value])
        )
        if url is None:
            return None
        return OperationalHook(url=text(url) or "", headers=_HEADERS.decode(headers or b"{}"))

    async def set_operational_webhook(self, client: str, hook: OperationalHook) -> None:
        """Store (replace) the client's operational webhook."""
        mapping = {
            OpsField.URL.value: hook.url,
            OpsField.HEADERS.value: msgspec.json.encode(hook.headers),
        }
        await r(self.redis.hset(keys.operational(client), mapping=mapping))

    async def delete_operational_webhook(self, client: str) -> bool:
        """Remove it; False when there was none."""
        return bool(await r(self.redis.delete(keys.operational(client))))

    async def take_quota(self, name: str, client: str, window_s: int) -> QuotaUse:
        """Count one use of a per-client quota: the uses in this window so far (this one
        included) and the ms left in it (a fixed window from its first use; the counter
        expires with it)."""
        res = await self._quota([keys.quota(client, name)], [window_s * 1000])
        return decode_map(res, QuotaUse)

    async def open_incident(self, name: str, ttl_s: int) -> bool:
        """Mark an incident open; True only for the call that opened it."""
        return bool(await r(self.redis.set(keys.incident(name), "1", nx=True, ex=ttl_s)))

    async def incident_open(self, name: str) -> bool:
        """Whether the incident is open now."""
        return bool(await r(self.redis.exists(keys.incident(name))))

    async def close_incident(self, name: str) -> None:
        """The incident is over (the next one opens anew)."""
        await r(self.redis.delete(keys.incident(name)))

    async def redeliver_batch(
        self, client: str, query: RedeliverQuery, offset: int, limit: int
    ) -> BatchRedelivered:
        """Examine up to ``limit`` of the client's subscriptions in ``query.state`` from rank
        ``offset`` (oldest first) and redeliver those matching, as the single redeliver does."""
        q = query
        res = await self._redeliver_batch(
            [keys.client_state(client, q.state), keys.DUE_DELIVERY, *keys.client_states(client)],
            [
                client,
                offset,
                limit,
                keys.run_id_digest(q.run_id) if q.run_id else "",
                q.host or "",
                "" if q.since_ms is None else q.since_ms,
                "" if q.until_ms is None else q.until_ms,
                self.ttl_ms,
            ],
        )
        return decode_map(res, BatchRedelivered)
