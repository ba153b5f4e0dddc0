"""Reliability 2, Redis restart: the relay's own Redis (AOF on) is stopped with SIGTERM while M runs
are watched and D deliveries are in flight, then started again on the same port and data.

A real ``relay api`` process and two ``relay worker`` processes run throughout and are never
restarted: the API answers 503 (never 500) while Redis is away, ``/readyz`` included, and both
recover by themselves. Nothing is lost: every subscription ends ``delivered``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import redis

from relay.embedded_redis import EmbeddedRedis
from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.intuned_fixtures import MakeFake, ManualClock
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.reliability import (
    StartApi,
    duplicates,
    register_many,
    state_counts,
    states,
)
from tests.support.workers import StartWorker

OUTAGE_S = 3.0
PENDING_S = 1000.0


async def _unavailable_everywhere(http: httpx.AsyncClient, sid: str, run_id: str) -> int:
    """Call every route once while Redis is down; each must answer 503 JSON. Returns the count."""
    body = {
        "projectName": "demo-project",
        "runId": "during-outage",
        "callbackUrl": "http://127.0.0.1:9/x",
    }
    calls = [
        ("GET", "/readyz", None),
        ("POST", "/v1/subscriptions", body),
        ("GET", f"/v1/subscriptions/{sid}", None),
        ("GET", "/v1/subscriptions?state=delivering", None),
        ("DELETE", "/v1/subscriptions/sub_does_not_exist", None),
        ("POST", f"/v1/subscriptions/{sid}/redeliver", None),
        ("GET", f"/v1/runs/demo-project/{run_id}", None),
        ("GET", "/v1/signing-secret", None),
        ("POST", "/v1/signing-secret/rotate", None),
        ("POST", "/v1/runs", {**body, "api": "a", "parameters": {}}),
        ("POST", "/v1/ingress/intuned/" + "T" * 32, {}),
    ]
    headers = {**AUTH_ALPHA, "Idempotency-Key": "during-outage"}
    for method, path, payload in calls:
        resp = await http.request(method, path, json=payload, headers=headers)
        assert resp.status_code == 503, (method, path, resp.status_code, resp.text)
        assert resp.json()["detail"], (method, path)
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/metrics")).status_code == 200  # without the Redis-backed gauge
    return len(calls)


@pytest.mark.parametrize(
    ("m", "d", "poll"),
    [
        pytest.param(200, 50, ("300ms", "1s"), id="m200-d50"),
        pytest.param(1000, 200, ("1s", "3s"), id="m1000-d200", marks=pytest.mark.slow),
    ],
)
async def test_redis_restart_loses_nothing_and_nobody_restarts(
    make_fake_intuned: MakeFake,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    start_api: StartApi,
    tmp_path: Path,
    m: int,
    d: int,
    poll: tuple[str, str],
) -> None:
    # The runs stay pending on the fake's clock until the test moves it past PENDING_S.
    clock = ManualClock()
    fake_intuned: FakeIntunedHandle = make_fake_intuned(clock=clock)
    own = EmbeddedRedis(tmp_path / "own-redis", persistent=True)
    own.start()
    db = redis.Redis.from_url(own.url)
    try:
        env = {
            "REDIS_URL": own.url,
            "INTUNED_API_BASE_URL": fake_intuned.base_url,
            "RELAY_POLL_INTERVAL": poll[0],
            "RELAY_POLL_MAX_INTERVAL": poll[1],
            "RELAY_NOT_FOUND_GRACE": "5m",
            "RELAY_WORKER_CONCURRENCY": "128",
        }
        api = start_api(**env)
        workers = [start_worker(wait=False, **env), start_worker(wait=False, **env)]
        for w in workers:
            w.wait_started()
        pids = [w.proc.pid for w in workers]
        async with httpx.AsyncClient(base_url=api.base_url, timeout=15) as http:
            runs = [
                fake_intuned.state.create_run(
                    RunScript(pending_seconds=PENDING_S, outcome="completed", result=i)
                )
                for i in range(m)
            ]
            watched = await register_many(
                http,
                [(r, receiver.url(f"/ok/w{i}")) for i, r in enumerate(runs)],
                concurrency=16,
            )
            # D subscriptions join a run Intuned does not know yet; when it appears, completed,
            # one poll fans out D deliveries at once to a receiver that takes 200 ms to answer.
            pending = await register_many(
                http,
                [("redis-run", receiver.url(f"/slow/200/d{j}")) for j in range(d)],
                concurrency=16,
            )
            fake_intuned.state.create_run(
                RunScript(outcome="completed", result="d"), run_id="redis-run"
            )
            # Stop Redis once half of them reached the receiver: the rest are on the wire or
            # about to be, none of those recorded yet.
            await receiver.wait_for_async(d // 2, timeout=30)
            before = state_counts(db, watched + pending)
            own.stop()  # SIGTERM: Redis writes its AOF and exits, with D deliveries unrecorded
            down_at = time.monotonic()
            # Many of the D are still unrecorded when Redis goes away.
            assert before["watching"] == m and before["delivering"] >= d // 4, before
            in_flight = before["delivering"]

            checked = await _unavailable_everywhere(http, watched[0], runs[0])
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            assert (await http.get("/readyz")).status_code == 503
            own.start()  # same port, same data directory
            outage = time.monotonic() - down_at

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await wait_until(ready, timeout=20, interval=0.2)
            assert None not in states(db, watched + pending).values()  # the AOF kept them all
            clock.advance(PENDING_S)  # now every watched run answers completed
            late_run = fake_intuned.state.create_run(RunScript(outcome="completed", result="late"))
            [late] = await register_many(http, [(late_run, receiver.url("/ok/late"))])
            everyone = [*watched, *pending, late]

            def all_delivered() -> bool:
                return state_counts(db, everyone) == {"delivered": len(everyone)}

            try:
                await wait_until(all_delivered, timeout=60, interval=0.5)
            except TimeoutError:
                pytest.fail(f"not all delivered within 60 s: {state_counts(db, everyone)}")
        seen = {json.loads(r.body)["data"]["subscriptionId"] for r in receiver.requests}
        dups = duplicates(receiver.requests)
        print(
            f"\nredis restart: watched={m} pending={d} (still delivering at the stop: {in_flight}) "
            f"outage={outage:.1f}s 503-checks={checked} "
            f"delivered={len(everyone)} lost={len(set(everyone) - seen)} duplicates={dups}"
        )
        assert seen == set(everyone)
        assert [w.proc.pid for w in workers] == pids
        assert all(w.proc.poll() is None for w in workers)
        assert api.proc.poll() is None
        assert dups <= d  # only deliveries in flight at the stop may be sent twice
    finally:
        db.close()
        own.stop()
