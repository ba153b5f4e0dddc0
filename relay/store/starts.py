"""The start-and-watch side of the store: Idempotency-Key records, push tokens, push fields.

A key is taken (pending) before Intuned is called and settled with the answer (done), marked
unknown (a timeout after sending), or freed (the start surely did not happen). A run started
through the relay gets its own deadline and, with a push token, the fields that let a push make
it due now (``push.lua``). Redis's clock stamps everything. This module must never make HTTP
calls or decide policy: callers pass lifetimes and windows.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from relay.model import PushOutcome, StartKeyState
from relay.store import keys
from relay.store.keys import IngressField
from relay.store.scripts import Script, decode_map, r, text


class StartKey(msgspec.Struct, frozen=True):
    """What an idempotency key holds: its state and, when settled, the stored answer."""

    state: StartKeyState
    code: int = 0
    body: bytes = b""


class IngressToken(msgspec.Struct, frozen=True):
    """The run a push token belongs to and the hash of the secret header it must carry."""

    run_key: str
    secret_hash: str


class _Settled(msgspec.Struct, frozen=True):
    settled: bool


class _Marked(msgspec.Struct, frozen=True):
    marked: bool


class _Pushed(msgspec.Struct, frozen=True):
    outcome: PushOutcome


class StartStore:
    """Idempotency records, ingress tokens and the push fields of a run's watch."""

    def __init__(self, redis: Redis, *, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self._claim = Script(redis, "start_key_claim")
        self._settle = Script(redis, "start_key_settle")
        self._expect = Script(redis, "expect_push")
        self._push = Script(redis, "push")

    async def claim_key(
        self, client: str, key_hash: str, fingerprint: str, ttl_ms: int, pending_ms: int
    ) -> StartKey:
        """Take the key for a new start (state NEW), or read what it already holds."""
        reply = await self._claim(
            [keys.start_key(client, key_hash)], [fingerprint, ttl_ms, pending_ms]
        )
        return decode_map(reply, StartKey, frozenset({"body"}))

    async def settle_key(
        self,
        client: str,
        key_hash: str,
        fingerprint: str,
        state: StartKeyState,
        code: int = 0,
        body: bytes = b"",
    ) -> bool:
        """Store the answer under a key this request holds (DONE or UNKNOWN)."""
        args: list[str | int | bytes] = [fingerprint, state.value, code, body]
        reply = await self._settle([keys.start_key(client, key_hash)], args)
        return decode_map(reply, _Settled).settled

    async def expect_push(
        self, run_key: str, deadline_ms: int, token: str = "", secret_hash: str = ""
    ) -> bool:
        """Give a started run its deadline (ms from now) and, with a token, its ingress; called
        before the run is registered (see ``expect_push.lua``)."""
        rd = keys.run_digest(run_key)
        key_list = [keys.watch(rd), *([keys.ingress(token)] if token else [])]
        args: list[str | int] = [run_key, deadline_ms, self.ttl_ms, secret_hash if token else ""]
        return decode_map(await self._expect(key_list, args), _Marked).marked

    async def ingress_token(self, token: str) -> IngressToken | None:
        """The run and secret hash behind a push token (None: unknown or expired)."""
        rk, sh = await r(
            self.redis.hmget(keys.ingress(token), [IngressField.RUN_KEY, IngressField.SECRET_HASH])
        )
        if rk is None or sh is None:
            return None
        return IngressToken(run_key=text(rk) or "", secret_hash=text(sh) or "")

    async def pushed(self, run_key: str, burst_ms: int) -> PushOutcome:
        """Record a push for a run: what it did to the run's watch."""
        rd = keys.run_digest(run_key)
        reply = await self._push([keys.watch(rd), keys.DUE_POLL], [rd, burst_ms])
        return decode_map(reply, _Pushed).outcome
