"""Start-up checks of what the relay depends on: Redis's durability settings and Intuned's key.

``inspect_redis`` reads whether Redis persists (AOF or RDB save rules) and whether it may evict
keys; ``probe_intuned_key`` makes one result call for a run that cannot exist (404: the key is
fine; 401/403: refused; anything else: unknown). ``Readiness`` holds the latest of both for
``/readyz``; ``report_redis`` and ``report_intuned_key`` log a problem loudly, one line naming
the setting to change. ``watch_intuned_key`` re-probes in the background so ``/readyz`` follows
reality, and ``current_intuned_key`` says refused while the workers' polls see the key refused
(their open ``intuned-unauthorized`` incident). None of these findings ever makes the relay not
ready: only Redis not answering does.
Must never log or return the Intuned key, and never raise out of a background probe.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from relay.errors import unavailable
from relay.intuned.client import IntunedClient
from relay.intuned.models import NotFoundOutcome, Unauthorized
from relay.services.operational import INCIDENT_INTUNED_KEY
from relay.settings import Settings
from relay.store import ControlStore

log = structlog.get_logger("relay.readiness")

Persistence = Literal["aof", "rdb", "none", "unknown"]
KeyState = Literal["ok", "refused", "unknown"]

# Intuned run ids are nanoids; this one is outside what Intuned issues, in a project nobody has.
PROBE_PROJECT = "intuned-relay-key-probe"
PROBE_RUN_ID = "relay-key-probe-this-run-cannot-exist"
# How often the API probes the key again: soon while it is refused or unknown, rarely when fine.
REPROBE_UNHEALTHY_S = 60.0
REPROBE_HEALTHY_S = 600.0


class RedisSafety(msgspec.Struct, frozen=True):
    """What Redis says about its durability; ``problems`` is empty when it is safe for us."""

    persistence: Persistence
    eviction_policy: str
    problems: tuple[str, ...] = ()


class Readiness:
    """The latest findings, shown by ``/readyz`` (mutated by the checks, read per request)."""

    def __init__(self) -> None:
        self.redis: RedisSafety | None = None
        self.intuned_key: KeyState = "unknown"


def _persistence(aof_enabled: bool, save_rules: str | None) -> Persistence:
    if aof_enabled:
        return "aof"
    if save_rules is None:  # CONFIG is disabled (managed Redis): RDB cannot be seen
        return "unknown"
    return "rdb" if save_rules.strip() else "none"


def _problems(persistence: Persistence, policy: str) -> tuple[str, ...]:
    found: list[str] = []
    if persistence == "none":
        found.append(
            "Redis does not persist its data: a restart loses every subscription and pending "
            "delivery; set appendonly yes (or RDB save rules) on the Redis server"
        )
    if policy != "noeviction":
        found.append(
            f"Redis maxmemory-policy is {policy}: when full it evicts the relay's keys and "
            "subscriptions vanish; set maxmemory-policy noeviction on the Redis server"
        )
    return tuple(found)


async def _save_rules(redis: Redis) -> str | None:
    try:
        config: dict[Any, Any] = await redis.config_get("save")
    except ResponseError as exc:  # CONFIG renamed or refused: persistence by RDB is unknown
        log.info("redis_config_unreadable", error=str(exc)[:200])
        return None
    value = config.get("save", config.get(b"save", b""))
    return value.decode() if isinstance(value, bytes) else str(value)


async def inspect_redis(redis: Redis) -> RedisSafety:
    """Read Redis's persistence and eviction settings (INFO, and CONFIG GET save if allowed)."""
    persistence_info: dict[str, Any] = await redis.info("persistence")
    memory_info: dict[str, Any] = await redis.info("memory")
    policy = memory_info.get("maxmemory_policy", "unknown")
    policy = policy.decode() if isinstance(policy, bytes) else str(policy)
    persistence = _persistence(
        bool(int(persistence_info.get("aof_enabled", 0))), await _save_rules(redis)
    )
    return RedisSafety(persistence, policy, _problems(persistence, policy))


async def report_redis(redis: Redis, readiness: Readiness) -> None:
    """Check Redis once; warn loudly about each problem; keep the finding for ``/readyz``."""
    try:
        safety = await inspect_redis(redis)
    except RedisError as exc:
        log.warning("redis_settings_unchecked", cause=unavailable(exc).cause)
        return
    readiness.redis = safety
    for problem in safety.problems:
        log.warning("redis_unsafe_settings", problem=problem)


def key_verdict(probed: KeyState, incident_open: bool) -> KeyState:
    """What ``/readyz`` says of the key: refused while the workers' polls see it refused (an
    open ``intuned-unauthorized`` incident), the probe's finding otherwise."""
    return "refused" if incident_open else probed


async def current_intuned_key(readiness: Readiness, controls: ControlStore) -> KeyState:
    """The probe's finding at start and the latest polls' (contract §6), read from the store."""
    return key_verdict(readiness.intuned_key, await controls.incident_open(INCIDENT_INTUNED_KEY))


async def probe_intuned_key(client: IntunedClient) -> KeyState:
    """One result call for a run that cannot exist: 404 -> ok, 401/403 -> refused, else unknown."""
    outcome = await client.get_result(PROBE_PROJECT, PROBE_RUN_ID)
    if isinstance(outcome, NotFoundOutcome):
        return "ok"
    if isinstance(outcome, Unauthorized):
        return "refused"
    log.info("intuned_key_probe_inconclusive", outcome=type(outcome).__name__)
    return "unknown"


async def report_intuned_key(client: IntunedClient, readiness: Readiness) -> KeyState:
    """Probe the key, keep the finding, and log a refused key at error level (once per change)."""
    state = await probe_intuned_key(client)
    before, readiness.intuned_key = readiness.intuned_key, state
    if state == "refused" and before != "refused":
        log.error(
            "intuned_key_refused",
            problem="Intuned refused INTUNED_API_KEY (401/403): every watch will end with "
            "intuned_unauthorized; set INTUNED_API_KEY to a key of INTUNED_WORKSPACE_ID",
        )
    elif state == "ok" and before == "refused":
        log.info("intuned_key_accepted")
    return state


async def watch_intuned_key(
    client: IntunedClient,
    readiness: Readiness,
    *,
    unhealthy_every: float = REPROBE_UNHEALTHY_S,
    healthy_every: float = REPROBE_HEALTHY_S,
) -> None:
    """Probe now, then again every ``unhealthy_every`` s while not ok, ``healthy_every`` s while
    ok, until cancelled."""
    while True:
        try:
            state = await report_intuned_key(client, readiness)
        except Exception as exc:  # a bug in a probe must not end the probing: say so, go on
            log.error("intuned_key_probe_failed", error=repr(exc), exc_info=exc)
            state = readiness.intuned_key = "unknown"
        await asyncio.sleep(healthy_every if state == "ok" else unhealthy_every)


class StartupChecks:
    """What ``relay api`` and ``relay worker`` check as they start, kept for ``/readyz``.

    ``start`` checks Redis at once and probes Intuned's key in the background (the first probe
    right away; then, with ``reprobe``, again and again); ``aclose`` stops the probing.
    """

    def __init__(self, client: IntunedClient, readiness: Readiness) -> None:
        self.client = client
        self.readiness = readiness
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings, redis: Redis, *, reprobe: bool) -> StartupChecks:
        """Check Redis now; start probing the Intuned key with the relay's client and timeout."""
        readiness = Readiness()
        await report_redis(redis, readiness)
        client = IntunedClient(
            settings.intuned_api_base_url,
            settings.intuned_workspace_id,
            settings.intuned_api_key,
            timeout=settings.intuned_timeout,
            max_connections=1,
        )
        checks = cls(client, readiness)
        probing = (
            watch_intuned_key(client, readiness) if reprobe else _probe_once(client, readiness)
        )
        checks._task = asyncio.create_task(probing, name="relay-intuned-key-probe")
        return checks

    async def aclose(self) -> None:
        """Stop probing and close the probe's client."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # its end, not its errors
        await self.client.aclose()


async def _probe_once(client: IntunedClient, readiness: Readiness) -> None:
    try:
        await report_intuned_key(client, readiness)
    except Exception as exc:  # the worker runs on without the finding: say why
        log.error("intuned_key_probe_failed", error=repr(exc), exc_info=exc)
