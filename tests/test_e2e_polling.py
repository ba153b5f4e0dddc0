"""Polling stories (issue 3): real worker processes, the fake Intuned over sockets, real Redis.

The relay runs with a short clock here (poll interval 100 ms growing to 300 ms, 404 grace 500 ms)
so each story takes seconds; the schedule logic is the same as with the defaults.
"""

from __future__ import annotations

import json
import time
from typing import Any

from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, Fault, RunScript
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, StartWorker, subscription_state, wait_until

MAX_INTERVAL = 0.3


async def subscribe(api: AsyncTestClient[Any], run_id: str, url: str, **extra: Any) -> str:
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url, **extra}
    resp = await api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()["id"])


async def test_time_based_run_is_seen_terminal_within_one_max_interval(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(
        RunScript(pending_seconds=0.6, started_seconds=0.6, outcome="completed", result="x")
    )
    await subscribe(api, run_id, receiver.url("/ok"))
    await receiver.wait_for_async(1, timeout=10)
    stats = fake_intuned.state.run_stats(run_id)
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


async def test_429_retry_after_delays_the_next_poll(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, outcome="completed", result=1)
    )
    fake_intuned.state.add_fault(
        Fault(kind="rate_limited", run_id=run_id, times=1, retry_after="2")
    )
    await subscribe(api, run_id, receiver.url("/ok"))
    await receiver.wait_for_async(1, timeout=15)
    log = fake_intuned.state.run_stats(run_id).log
    assert log[0].http_status == 429
    assert log[1].at - log[0].at >= 2.0  # Retry-After: 2 honoured (base interval is 0.1 s)


async def test_5xx_burst_garbage_and_resets_do_not_end_the_watch(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, outcome="completed", result=1)
    )
    for fault in (
        Fault(kind="error_500", run_id=run_id, times=2),
        Fault(kind="gateway", run_id=run_id, times=2, status=503),
        Fault(kind="malformed_json", run_id=run_id, times=1),
        Fault(kind="wrong_shape", run_id=run_id, times=1),
        Fault(kind="reset", run_id=run_id, times=1),
    ):
        fake_intuned.state.add_fault(fault)
    sid = await subscribe(api, run_id, receiver.url("/ok"))
    [req] = await receiver.wait_for_async(1, timeout=20)
    assert json.loads(req.body)["type"] == "run.completed"
    await wait_until(lambda: _is(api, sid, "delivered"), timeout=10)
    assert fake_intuned.state.run_stats(run_id).by_http_status.get(500, 0) == 2


async def _is(api: AsyncTestClient[Any], sid: str, state: str) -> bool:
    return await subscription_state(api, sid, AUTH_ALPHA) == state


async def _failure_of(receiver: ReceiverHandle) -> dict[str, Any]:
    [req] = await receiver.wait_for_async(1, timeout=15)
    body = json.loads(req.body)
    assert body["type"] == "run.watch_failed"
    return dict(body["data"]["failure"])


async def test_404_beyond_the_grace_period_fails_with_run_not_found(
    api: AsyncTestClient[Any], receiver: ReceiverHandle, start_worker: StartWorker
) -> None:
    start_worker()
    await subscribe(api, "no-such-run", receiver.url("/ok"))
    failure = await _failure_of(receiver)
    assert failure["code"] == "run_not_found"


async def test_unknown_run_that_appears_within_grace_is_followed(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker(RELAY_NOT_FOUND_GRACE="5s")
    await subscribe(api, "late-run", receiver.url("/ok"))
    time.sleep(0.5)
    fake_intuned.state.create_run(RunScript(outcome="completed", result=1), run_id="late-run")
    [req] = await receiver.wait_for_async(1, timeout=15)
    assert json.loads(req.body)["type"] == "run.completed"


async def test_401_fails_with_intuned_unauthorized(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=5))
    start_worker(INTUNED_API_KEY="wrong-key-wrong-key")
    await subscribe(api, run_id, receiver.url("/ok"))
    failure = await _failure_of(receiver)
    assert failure["code"] == "intuned_unauthorized"
    polls = fake_intuned.state.run_stats(run_id).polls
    time.sleep(0.5)
    assert fake_intuned.state.run_stats(run_id).polls == polls  # a failed watch is not polled again


async def test_watch_timeout_fails_with_watch_timeout(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=10_000))
    start_worker(RELAY_WATCH_TIMEOUT="1s")
    await subscribe(api, run_id, receiver.url("/ok"))
    failure = await _failure_of(receiver)
    assert failure["code"] == "watch_timeout"


async def test_late_registration_on_cached_terminal_run_makes_no_intuned_call(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=1, outcome="failed"))
    await subscribe(api, run_id, receiver.url("/ok/first"))
    await receiver.wait_for_async(1, timeout=10)
    polls = fake_intuned.state.poll_count(run_id)
    await subscribe(api, run_id, receiver.url("/ok/late"))
    reqs = await receiver.wait_for_async(2, timeout=10)
    assert json.loads(reqs[1].body)["type"] == "run.failed"
    assert fake_intuned.state.poll_count(run_id) == polls


async def test_run_that_ended_before_registration_is_delivered_after_one_poll(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(RunScript(outcome="canceled"))
    await subscribe(api, run_id, receiver.url("/ok"))
    [req] = await receiver.wait_for_async(1, timeout=10)
    assert json.loads(req.body)["type"] == "run.canceled"
    assert fake_intuned.state.poll_count(run_id) == 1


async def test_deleting_the_last_subscription_stops_polling(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=10_000))
    a = await subscribe(api, run_id, receiver.url("/ok/a"))
    b = await subscribe(api, run_id, receiver.url("/ok/b"))
    await wait_until(lambda: fake_intuned.state.poll_count(run_id) >= 2, timeout=10)
    assert (await api.delete(f"/v1/subscriptions/{a}", headers=AUTH_ALPHA)).status_code == 204
    before = fake_intuned.state.poll_count(run_id)
    await wait_until(lambda: fake_intuned.state.poll_count(run_id) > before, timeout=10)
    assert (await api.delete(f"/v1/subscriptions/{b}", headers=AUTH_ALPHA)).status_code == 204
    time.sleep(0.4)  # a poll already in flight may still land
    stopped = fake_intuned.state.poll_count(run_id)
    time.sleep(1.0)
    assert fake_intuned.state.poll_count(run_id) == stopped
    assert receiver.requests == []


async def test_unknown_status_is_not_terminal_and_the_watch_goes_on(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker()
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, outcome="completed", result=1)
    )
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", run_id=run_id, field="status", times=2))
    sid = await subscribe(api, run_id, receiver.url("/ok"))
    [req] = await receiver.wait_for_async(1, timeout=10)
    assert json.loads(req.body)["type"] == "run.completed"
    assert await subscription_state(api, sid, AUTH_ALPHA) in ("delivering", "delivered")


async def test_sigkill_of_a_worker_mid_watch_loses_nothing(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    first = start_worker()
    runs = [
        fake_intuned.state.create_run(RunScript(pending_seconds=1.5, outcome="completed", result=i))
        for i in range(20)
    ]
    for i, run_id in enumerate(runs):
        await subscribe(api, run_id, receiver.url(f"/ok/{i}"))
    await wait_until(lambda: all(fake_intuned.state.poll_count(r) >= 1 for r in runs), timeout=10)
    first.kill()
    start_worker()
    reqs = await receiver.wait_for_async(20, timeout=30)
    assert {json.loads(r.body)["data"]["runId"] for r in reqs} == set(runs)
