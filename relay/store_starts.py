"""Redis state of start-and-watch: idempotency records, ingress tokens, per-run push fields.

    r:idem:{client}:{key hash}  hash  st (pending|done|unknown), fp (body fingerprint),
                                      at (ms, Redis clock), code, body (the stored answer)
    r:ing:{token}               hash  rk (run key), sh (sha256 of the secret header value)
    r:w:{rk}                    hash  (the run's watch) px 1 when a push is expected,
                                      dl (ms) the watch's own deadline, pg 1 once a push came,
                                      pn 1 while a push awaits its poll, pt (ms) when the
                                      last push-triggered poll was claimed

Every script reads Redis's clock (TIME), never the caller's. This module must never make HTTP
calls or decide policy: the caller passes lifetimes and windows.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec
from redis.asyncio import Redis

from relay.model import StartKeyState

_TIME: Final = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: client key_hash fingerprint ttl_ms pending_ms. Returns a map (flat list):
# state new|pending|done|unknown|mismatch, code, body.
_CLAIM_KEY: Final = (
    _TIME
    + r"""
local k = 'r:idem:' .. ARGV[1] .. ':' .. ARGV[2]
local now = now_ms()
local f = redis.call('HMGET', k, 'st', 'fp', 'at', 'code', 'body')
if not f[1] then
  redis.call('HSET', k, 'st', 'pending', 'fp', ARGV[3], 'at', now)
  redis.call('PEXPIRE', k, ARGV[4])
  return {'state', 'new'}
end
if f[2] ~= ARGV[3] then return {'state', 'mismatch'} end
if f[1] == 'pending' and now - tonumber(f[3]) > tonumber(ARGV[5]) then
  -- The request that held the key never finished (its process died mid-start): whether
  -- Intuned started a run is unknown, and stays so for the key's lifetime.
  redis.call('HSET', k, 'st', 'unknown')
  return {'state', 'unknown'}
end
return {'state', f[1], 'code', f[4] or '', 'body', f[5] or ''}
"""
)

# ARGV: client key_hash fingerprint state code body. Settles a pending key (done or unknown).
_SETTLE_KEY: Final = r"""
local k = 'r:idem:' .. ARGV[1] .. ':' .. ARGV[2]
local f = redis.call('HMGET', k, 'st', 'fp')
if f[1] ~= 'pending' or f[2] ~= ARGV[3] then return 0 end
redis.call('HSET', k, 'st', ARGV[4], 'code', ARGV[5], 'body', ARGV[6])
return 1
"""

# ARGV: client key_hash fingerprint. Frees a pending key: the start surely did not happen.
_FORGET_KEY: Final = r"""
local k = 'r:idem:' .. ARGV[1] .. ':' .. ARGV[2]
local f = redis.call('HMGET', k, 'st', 'fp')
if f[1] ~= 'pending' or f[2] ~= ARGV[3] then return 0 end
redis.call('DEL', k)
return 1
"""

# ARGV: rk token secret_hash deadline_ms ttl_ms. Marks the run's watch as expecting a push and
# ending at its own deadline; stores the ingress token until the watch's result expires.
_EXPECT_PUSH: Final = (
    _TIME
    + r"""
local wk = 'r:w:' .. ARGV[1]
if redis.call('EXISTS', wk) == 0 then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', wk, 'px', 1)
  local ik = 'r:ing:' .. ARGV[2]
  redis.call('HSET', ik, 'rk', ARGV[1], 'sh', ARGV[3])
  redis.call('PEXPIRE', ik, math.max(tonumber(ARGV[4]) - now_ms(), 0) + tonumber(ARGV[5]))
end
redis.call('HSET', wk, 'dl', ARGV[4])
return 1
"""
)

# ARGV: rk burst_ms. A push arrived for a watched run: mark it and make its poll due now, unless
# a poll for an earlier push is still to come or was claimed within burst_ms (the run is then on
# the normal poll curve, which follows up). Returns 'triggered', 'coalesced' or 'ignored'.
_PUSHED: Final = (
    _TIME
    + r"""
local rk, burst = ARGV[1], tonumber(ARGV[2])
local wk = 'r:w:' .. rk
local w = redis.call('HMGET', wk, 'st', 'pn', 'pt')
if w[1] ~= 'watching' then return 'ignored' end
redis.call('HSET', wk, 'pg', 1)
local now = now_ms()
if w[2] or (w[3] and now - tonumber(w[3]) < burst) then return 'coalesced' end
redis.call('HSET', wk, 'pn', 1)
redis.call('ZADD', 'r:due:poll', 'XX', 'LT', now, rk)
return 'triggered'
"""
)

# ARGV: rk. What a poll of the run needs to know about pushes; takes the push news (a push
# that arrived since the last poll), noting when its poll was claimed. Returns a map:
# px, pg, dl, pn ('' when unset).
_TAKE_PUSH_NEWS: Final = (
    _TIME
    + r"""
local wk = 'r:w:' .. ARGV[1]
local w = redis.call('HMGET', wk, 'px', 'pg', 'dl', 'pn')
if w[4] then
  redis.call('HDEL', wk, 'pn')
  redis.call('HSET', wk, 'pt', now_ms())
end
return {'px', w[1] or '', 'pg', w[2] or '', 'dl', w[3] or '', 'pn', w[4] or ''}
"""
)

# ARGV: rk burst_ms. After a non-terminal poll was recorded: when a push arrived meanwhile,
# its poll must not wait for the schedule just written. Returns 1 when the poll was brought
# forward.
_REPOLL_IF_PUSHED: Final = (
    _TIME
    + r"""
local rk = ARGV[1]
local w = redis.call('HMGET', 'r:w:' .. rk, 'st', 'pn', 'pt')
if w[1] ~= 'watching' or not w[2] then return 0 end
local due = math.max(now_ms(), tonumber(w[3] or '0') + tonumber(ARGV[2]))
redis.call('ZADD', 'r:due:poll', 'XX', 'LT', due, rk)
return 1
"""
)


class PushState(msgspec.Struct, frozen=True):
    """A watched run's push fields as one poll sees them."""

    expects_push: bool = False  # started through the relay with a sink
    pushed: bool = False  # a push arrived at some point
    news: bool = False  # a push arrived since the last poll (this poll answers it)
    deadline: int | None = None  # ms; None: RELAY_WATCH_TIMEOUT from first sight


class StartKey(msgspec.Struct, frozen=True):
    """What an idempotency key holds: its state and, when settled, the stored answer."""

    state: StartKeyState
    code: int = 0
    body: bytes = b""


class IngressToken(msgspec.Struct, frozen=True):
    """The run a push token belongs to and the hash of the secret header it must carry."""

    run_key: str
    secret_hash: str


def key_hash(idempotency_key: str) -> str:
    """The Redis name of an idempotency key (its value never leaves the request)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def _pairs(reply: list[bytes]) -> dict[str, bytes]:
    return {reply[i].decode(): reply[i + 1] for i in range(0, len(reply), 2)}


class StartStore:
    """Idempotency records, ingress tokens and per-run push fields (see the module docstring)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_CLAIM_KEY)
        self._settle = redis.register_script(_SETTLE_KEY)
        self._forget = redis.register_script(_FORGET_KEY)
        self._expect = redis.register_script(_EXPECT_PUSH)
        self._pushed = redis.register_script(_PUSHED)
        self._take_news = redis.register_script(_TAKE_PUSH_NEWS)
        self._repoll = redis.register_script(_REPOLL_IF_PUSHED)

    async def claim_key(
        self, client: str, khash: str, fingerprint: str, ttl_ms: int, pending_ms: int
    ) -> StartKey:
        """Take the key for a new start, or read what it already holds."""
        m = _pairs(await self._claim(args=[client, khash, fingerprint, ttl_ms, pending_ms]))
        code = m.get("code") or b"0"
        return StartKey(StartKeyState(m["state"].decode()), int(code), m.get("body") or b"")

    async def settle_key(
        self,
        client: str,
        khash: str,
        fingerprint: str,
        state: StartKeyState,
        code: int,
        body: bytes,
    ) -> None:
        """Store the answer under a key this request holds (state done or unknown)."""
        await self._settle(args=[client, khash, fingerprint, state.value, code, body])

    async def forget_key(self, client: str, khash: str, fingerprint: str) -> None:
        """Free a key this request holds: the start surely did not happen, a retry may."""
        await self._forget(args=[client, khash, fingerprint])

    async def expect_push(
        self, run_key: str, token: str, secret_hash: str, deadline_ms: int, ttl_ms: int
    ) -> None:
        """Give a started run its deadline and, with a token, its ingress (push expected)."""
        await self._expect(args=[run_key, token, secret_hash, deadline_ms, ttl_ms])

    async def ingress_token(self, token: str) -> IngressToken | None:
        """The run and secret hash behind a push token (None: unknown or expired)."""
        rk, sh = await self.redis.hmget(f"r:ing:{token}", ["rk", "sh"])  # type: ignore[misc]
        if rk is None or sh is None:
            return None
        return IngressToken(run_key=rk.decode(), secret_hash=sh.decode())

    async def pushed(self, run_key: str, burst_ms: int) -> str:
        """Record a push for a run: 'triggered', 'coalesced' or 'ignored'."""
        return bytes(await self._pushed(args=[run_key, burst_ms])).decode()

    async def take_push_news(self, run_key: str) -> PushState:
        """The run's push fields for the poll about to happen (consumes the push news)."""
        m = _pairs(await self._take_news(args=[run_key]))
        return PushState(
            expects_push=bool(m["px"]),
            pushed=bool(m["pg"]),
            news=bool(m["pn"]),
            deadline=int(m["dl"]) if m["dl"] else None,
        )

    async def repoll_if_pushed(self, run_key: str, burst_ms: int) -> bool:
        """Bring the next poll forward when a push arrived during the poll just recorded."""
        return bool(await self._repoll(args=[run_key, burst_ms]))
