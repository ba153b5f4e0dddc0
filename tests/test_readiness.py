"""``/readyz`` and the start-up checks: Redis's durability settings and Intuned's key.

What the checks find is shown in ``/readyz`` and logged loudly, but never turns a 200 into a
503: only Redis not answering does. Real Redis servers (the test's own, to change its settings),
the fake Intuned over sockets, and real ``relay api`` / ``relay worker`` processes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import redis
from structlog.testing import capture_logs

from relay.embedded_redis import EmbeddedRedis, free_port
from relay.fake_intuned import FakeIntuned, start_in_thread
from relay.intuned.client import IntunedClient
from relay.readiness import Readiness, key_verdict, probe_intuned_key, watch_intuned_key
from relay.services.operational import INCIDENT_INTUNED_KEY
from relay.store import keys
from tests.support.api_helpers import api_client, api_env
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID, MakeFake
from tests.support.relay_fixtures import wait_until
from tests.support.reliability import StartApi
from tests.support.workers import StartWorker

WRONG_KEY = "wrong-key-wrong-key"  # the suite's log audit makes sure it is never logged


async def test_readyz_reports_persistence_and_eviction_and_follows_changes(
    own_redis: EmbeddedRedis,
) -> None:
    db = redis.Redis.from_url(own_redis.url)
    with capture_logs() as logs:
        async with api_client(api_env(own_redis.url)) as api:
            first = await api.get("/readyz")
            db.config_set("maxmemory-policy", "allkeys-lru")
            evicting = await api.get("/readyz")
            db.config_set("save", "3600 1")
            rdb = await api.get("/readyz")
            db.config_set("appendonly", "yes")
            aof = await api.get("/readyz")
    db.config_set("appendonly", "no")  # so the server stops at once, without a final save
    db.config_set("save", "")
    db.close()
    # Problems are reported, never a 503.
    assert [r.status_code for r in (first, evicting, rdb, aof)] == [200] * 4
    assert first.json() == {
        "status": "ok",
        "redisPersistence": "none",
        "redisEvictionPolicy": "noeviction",
        "intunedKey": "unknown",  # nothing answers at this test's INTUNED_API_BASE_URL
    }
    assert evicting.json()["redisEvictionPolicy"] == "allkeys-lru"
    assert rdb.json()["redisPersistence"] == "rdb"
    assert aof.json()["redisPersistence"] == "aof"
    # At start, one warning naming the setting to change.
    warned = [e for e in logs if e["event"] == "redis_unsafe_settings"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert "appendonly yes" in warned[0]["problem"]


async def test_readyz_of_a_safe_redis_has_nothing_to_say(redis_url: str, redis_sync: Any) -> None:
    with capture_logs() as logs:
        async with api_client(api_env(redis_url)) as api:
            ready = (await api.get("/readyz")).json()
    assert ready["redisPersistence"] == "aof" and ready["redisEvictionPolicy"] == "noeviction"
    assert not [e for e in logs if e["event"] == "redis_unsafe_settings"]


async def test_key_probe_tells_ok_refused_and_unknown(make_fake_intuned: MakeFake) -> None:
    fake = make_fake_intuned()
    base = fake.base_url
    async with IntunedClient(base, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=2) as good:
        assert await probe_intuned_key(good) == "ok"
    async with IntunedClient(base, FAKE_WORKSPACE_ID, WRONG_KEY, timeout=2) as wrong:
        assert await probe_intuned_key(wrong) == "refused"
    closed = f"http://127.0.0.1:{free_port()}/api/v1/workspace"
    async with IntunedClient(closed, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=2) as nobody:
        assert await probe_intuned_key(nobody) == "unknown"


async def test_the_key_is_probed_again_until_it_is_ok() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1/workspace"
    readiness = Readiness()
    async with IntunedClient(base, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=1) as client:
        watcher = asyncio.create_task(
            watch_intuned_key(client, readiness, unhealthy_every=0.05, healthy_every=60)
        )
        fake = None
        try:
            # Nothing listens yet: probed (a connection error), found unknown, probed again.
            await asyncio.sleep(0.3)
            assert readiness.intuned_key == "unknown" and not watcher.done()
            fake = start_in_thread(FakeIntuned({FAKE_WORKSPACE_ID: FAKE_API_KEY}), port=port)
            await wait_until(lambda: readiness.intuned_key == "ok", timeout=10)
            assert fake.state.stats().result_requests == 1  # ok now: no more probes for a while
        finally:
            watcher.cancel()
            if fake is not None:
                fake.stop()


def _events(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def test_wrong_intuned_key_and_unsafe_redis_show_in_readyz_and_logs_at_start(
    own_redis: EmbeddedRedis,
    start_api: StartApi,
    start_worker: StartWorker,
    tmp_path: Path,
) -> None:
    env = {"REDIS_URL": own_redis.url, "INTUNED_API_KEY": WRONG_KEY}
    api = start_api(**env)
    worker = start_worker(**env)

    def refused() -> bool:
        ready = httpx.get(api.base_url + "/readyz", timeout=5)
        return ready.status_code == 200 and ready.json()["intunedKey"] == "refused"

    await wait_until(refused, timeout=10, interval=0.1)
    ready = httpx.get(api.base_url + "/readyz", timeout=5).json()
    assert ready["redisPersistence"] == "none" and ready["status"] == "ok"
    worker.wait_for_log("intuned_key_refused", timeout=10)
    for log in (api.process.log(), worker.log()):
        events = _events(log)
        [key] = [e for e in events if e["event"] == "intuned_key_refused"]
        assert key["level"] == "error" and "INTUNED_API_KEY" in key["problem"]
        [unsafe] = [e for e in events if e["event"] == "redis_unsafe_settings"]
        assert unsafe["level"] == "warning" and "appendonly yes" in unsafe["problem"]
        assert WRONG_KEY not in log


async def test_readyz_says_refused_while_the_polls_see_the_key_refused(
    redis_url: str, redis_sync: Any
) -> None:
    incident = keys.incident(INCIDENT_INTUNED_KEY)
    async with api_client(api_env(redis_url)) as api:
        probed = (await api.get("/readyz")).json()["intunedKey"]
        assert probed != "refused"
        redis_sync.set(incident, "1", ex=60)  # what a worker's refused poll opens
        assert (await api.get("/readyz")).json()["intunedKey"] == "refused"
        redis_sync.delete(incident)  # the next accepted poll closes it
        assert (await api.get("/readyz")).json()["intunedKey"] == probed


def test_the_key_verdict_follows_an_open_incident() -> None:
    assert key_verdict("ok", incident_open=True) == "refused"
    assert key_verdict("ok", incident_open=False) == "ok"
    assert key_verdict("unknown", incident_open=False) == "unknown"
