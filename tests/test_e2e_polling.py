"""Polling stories (issue 3): a worker in the test's loop (a real process where one is SIGKILLed),
the fake Intuned over sockets, real Redis.

The relay runs with a short clock here (poll interval 100 ms growing to 300 ms, 404 grace 500 ms)
so each story takes seconds; the schedule logic is the same as with the defaults.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from relay.fake_intuned import Fault, RunScript
from tests.support.e2e import E2E
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until

MAX_INTERVAL = 0.3
DONE = {"outcome": "completed", "result": 1}


async def test_time_based_run_is_seen_terminal_within_one_max_interval(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(pending_seconds=0.6, started_seconds=0.6, outcome="completed", result="x")
    await e2e.subscribe(run_id, "/ok")
    await e2e.receiver.wait_for_async(1, timeout=10)
    stats = e2e.intuned.state.run_stats(run_id)
    statuses = [p.status for p in stats.log]
    assert statuses[0] == "pending" and "started" in statuses and statuses[-1] == "completed"
    # The run became terminal 1.2 s after creation; the relay's poll saw it within one max
    # interval (+10 % jitter, +0.25 s for scheduling on a busy 2-core machine).
    available = stats.created_at + 1.2
    assert stats.first_terminal_at is not None
    assert stats.first_terminal_at - available <= MAX_INTERVAL * 1.1 + 0.25
    # Backoff: gaps grow from the base interval and never exceed the max interval (+ jitter).
    gaps = [b.at - a.at for a, b in zip(stats.log, stats.log[1:], strict=False)]
    assert all(g <= MAX_INTERVAL * 1.1 + 0.25 for g in gaps), gaps


async def test_429_retry_after_delays_the_next_poll(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(pending_polls=1, **DONE)
    e2e.intuned.state.add_fault(Fault(kind="rate_limited", run_id=run_id, times=1, retry_after="2"))
    await e2e.subscribe(run_id, "/ok")
    await e2e.receiver.wait_for_async(1, timeout=15)
    log = e2e.intuned.state.run_stats(run_id).log
    assert log[0].http_status == 429
    assert log[1].at - log[0].at >= 2.0  # Retry-After: 2 honoured (base interval is 0.1 s)


async def test_5xx_burst_garbage_and_resets_do_not_end_the_watch(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(pending_polls=1, **DONE)
    for fault in (
        Fault(kind="error_500", run_id=run_id, times=2),
        Fault(kind="gateway", run_id=run_id, times=2, status=503),
        Fault(kind="malformed_json", run_id=run_id, times=1),
        Fault(kind="wrong_shape", run_id=run_id, times=1),
        Fault(kind="reset", run_id=run_id, times=1),
    ):
        e2e.intuned.state.add_fault(fault)
    sid = await e2e.subscribe(run_id, "/ok")
    [req] = await e2e.receiver.wait_for_async(1, timeout=20)
    assert json.loads(req.body)["type"] == "run.completed"
    await e2e.reach(sid, "delivered", timeout=10)
    assert e2e.intuned.state.run_stats(run_id).by_http_status.get(500, 0) == 2


async def _watch_fails_with(e2e: E2E, code: str, run_id: str, **worker_env: str) -> dict[str, Any]:
    """A worker (with ``worker_env``) ends the watch of ``run_id`` with ``run.watch_failed``;
    the event's ``data``."""
    await e2e.start_inproc_worker(**worker_env)
    await e2e.subscribe(run_id, "/ok")
    [req] = await e2e.receiver.wait_for_async(1, timeout=15)
    body = json.loads(req.body)
    assert body["type"] == "run.watch_failed"
    assert body["data"]["failure"]["code"] == code
    return dict(body["data"])


async def test_404_beyond_the_grace_period_fails_with_run_not_found(e2e: E2E) -> None:
    data = await _watch_fails_with(e2e, "run_not_found", "no-such-run")
    assert "status" not in data  # the relay never saw one (docs/webhooks.md)


async def test_unknown_run_that_appears_within_grace_is_followed(e2e: E2E) -> None:
    await e2e.start_inproc_worker(RELAY_NOT_FOUND_GRACE="5s")
    await e2e.subscribe("late-run", "/ok")
    await asyncio.sleep(0.5)
    e2e.intuned.state.create_run(RunScript(**DONE), run_id="late-run")
    [req] = await e2e.receiver.wait_for_async(1, timeout=15)
    assert json.loads(req.body)["type"] == "run.completed"


async def test_401_fails_with_intuned_unauthorized(e2e: E2E) -> None:
    run_id = e2e.run(pending_polls=5)
    await _watch_fails_with(
        e2e, "intuned_unauthorized", run_id, INTUNED_API_KEY="wrong-key-wrong-key"
    )
    polls = e2e.intuned.state.run_stats(run_id).polls
    await asyncio.sleep(0.5)
    assert e2e.intuned.state.run_stats(run_id).polls == polls  # a failed watch is not polled again


async def test_watch_timeout_fails_with_watch_timeout(e2e: E2E) -> None:
    run_id = e2e.run(pending_polls=10_000)
    data = await _watch_fails_with(e2e, "watch_timeout", run_id, RELAY_WATCH_TIMEOUT="1s")
    assert data["status"] == "pending"  # the last status seen (docs/webhooks.md)


async def test_a_run_that_ended_before_the_deadline_is_delivered_not_timed_out(e2e: E2E) -> None:
    # The first poll sees it pending; the next one, capped at the 1 s deadline by the 30 s
    # interval, is the last look: Intuned says completed by then, so that is what is delivered.
    run_id = e2e.run(pending_polls=1, outcome="completed", result={"ok": True})
    await e2e.start_inproc_worker(
        RELAY_WATCH_TIMEOUT="1s", RELAY_POLL_INTERVAL="30s", RELAY_POLL_MAX_INTERVAL="30s"
    )
    await e2e.subscribe(run_id, "/ok")
    [req] = await e2e.receiver.wait_for_async(1, timeout=15)
    body = json.loads(req.body)
    assert body["type"] == "run.completed", body
    assert body["data"]["result"] == {"ok": True}
    assert e2e.intuned.state.run_stats(run_id).polls == 2


async def test_late_registration_on_cached_terminal_run_makes_no_intuned_call(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(pending_polls=1, outcome="failed")
    await e2e.subscribe(run_id, "/ok/first")
    await e2e.receiver.wait_for_async(1, timeout=10)
    polls = e2e.intuned.state.poll_count(run_id)
    await e2e.subscribe(run_id, "/ok/late")
    reqs = await e2e.receiver.wait_for_async(2, timeout=10)
    assert json.loads(reqs[1].body)["type"] == "run.failed"
    assert e2e.intuned.state.poll_count(run_id) == polls


async def test_run_that_ended_before_registration_is_delivered_after_one_poll(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(outcome="canceled")
    await e2e.subscribe(run_id, "/ok")
    [req] = await e2e.receiver.wait_for_async(1, timeout=10)
    assert json.loads(req.body)["type"] == "run.canceled"
    assert e2e.intuned.state.poll_count(run_id) == 1


async def test_deleting_the_last_subscription_stops_polling(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    state = e2e.intuned.state
    run_id = e2e.run(pending_polls=10_000)
    a = await e2e.subscribe(run_id, "/ok/a")
    b = await e2e.subscribe(run_id, "/ok/b")
    await wait_until(lambda: state.poll_count(run_id) >= 2, timeout=10)
    assert (await e2e.api.delete(f"/v1/subscriptions/{a}", headers=AUTH_ALPHA)).status_code == 204
    before = state.poll_count(run_id)
    await wait_until(lambda: state.poll_count(run_id) > before, timeout=10)
    assert (await e2e.api.delete(f"/v1/subscriptions/{b}", headers=AUTH_ALPHA)).status_code == 204
    await asyncio.sleep(0.4)  # a poll already in flight may still land
    stopped = state.poll_count(run_id)
    await asyncio.sleep(1.0)
    assert state.poll_count(run_id) == stopped
    assert e2e.receiver.requests == []


async def test_unknown_status_is_not_terminal_and_the_watch_goes_on(e2e: E2E) -> None:
    await e2e.start_inproc_worker()
    run_id = e2e.run(pending_polls=1, **DONE)
    e2e.intuned.state.add_fault(Fault(kind="unknown_enum", run_id=run_id, field="status", times=2))
    sid = await e2e.subscribe(run_id, "/ok")
    [req] = await e2e.receiver.wait_for_async(1, timeout=10)
    assert json.loads(req.body)["type"] == "run.completed"
    assert await e2e.state(sid) in ("delivering", "delivered")


async def test_sigkill_of_a_worker_mid_watch_loses_nothing(e2e: E2E) -> None:
    first = e2e.start_worker()
    runs = [e2e.run(pending_seconds=1.5, outcome="completed", result=i) for i in range(20)]
    for i, run_id in enumerate(runs):
        await e2e.subscribe(run_id, f"/ok/{i}")
    await wait_until(lambda: all(e2e.intuned.state.poll_count(r) >= 1 for r in runs), timeout=10)
    first.kill()
    e2e.start_worker()
    reqs = await e2e.receiver.wait_for_async(20, timeout=30)
    assert {json.loads(r.body)["data"]["runId"] for r in reqs} == set(runs)
