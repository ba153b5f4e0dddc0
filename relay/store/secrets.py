"""Signing secrets: created only by the API, read by deliveries, rotated with a 24 h overlap.

A delivery never creates a secret (``DeliveryStore`` only reads them with its claim). Secrets
are never logged. This module must never make HTTP calls.
"""

from __future__ import annotations

from redis.asyncio import Redis

from relay.store import keys
from relay.store.deliveries import ROTATION_OVERLAP_MS
from relay.store.keys import SecretField
from relay.store.scripts import Script, r, text


class SecretStore:
    """A client's signing secrets."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._rotate = Script(redis, "rotate_secret")

    async def signing_secret(self, client: str, fresh: str) -> str:
        """The client's current secret, created from ``fresh`` when it has none."""
        key = keys.secrets(client)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(key, SecretField.CURRENT.value, fresh)
            pipe.hget(key, SecretField.CURRENT.value)
            _, current = await pipe.execute()
        return text(current) or fresh

    async def current(self, client: str) -> str | None:
        """The client's current secret, or None (nothing is created)."""
        return text(await r(self.redis.hget(keys.secrets(client), SecretField.CURRENT.value)))

    async def in_force(self, client: str) -> list[str]:
        """The secrets that sign a webhook now (by Redis's clock): the current one, plus the
        previous one within 24 h of a rotation. Nothing is created."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(
                keys.secrets(client),
                [SecretField.CURRENT.value, SecretField.PREVIOUS.value, SecretField.ROTATED.value],
            )
            pipe.time()
            (cur, prev, rot), (seconds, micros) = await pipe.execute()
        now = int(seconds) * 1000 + int(micros) // 1000
        out = [text(cur) or ""] if cur else []
        if prev and rot and now - int(rot) < ROTATION_OVERLAP_MS:
            out.append(text(prev) or "")
        return out

    async def rotate_secret(self, client: str, fresh: str) -> str:
        """Make ``fresh`` the current secret; the old one keeps signing for 24 h."""
        await self._rotate([keys.secrets(client)], [fresh])
        return fresh
