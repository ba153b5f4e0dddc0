"""Delivery stories (issue 4): signed POSTs verified by `standardwebhooks`, retries, 410,
Retry-After, redirects, hangs, exhausted → redelivered, secret rotation, a SIGKILLed worker.

The relay runs with RELAY_RETRY_SCHEDULE=50ms,100ms,150ms (4 attempts) and a 1 s timeout; its
worker runs in the test's loop, except the SIGKILLed ones, which are processes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from standardwebhooks.webhooks import Webhook

from relay.fake_intuned import RunScript
from tests.support.e2e import E2E
from tests.support.receiver import verify
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA, wait_until

DONE = {"outcome": "completed", "result": 1}


@pytest.fixture
async def running(e2e: E2E) -> E2E:
    """The bundle with one worker running on the suite's settings, in the test's loop."""
    await e2e.start_inproc_worker()
    return e2e


@pytest.mark.parametrize(
    ("script", "event"),
    [
        (RunScript(outcome="completed", result={"a": [1, 2]}), "run.completed"),
        (
            RunScript(
                outcome="failed",
                error={"message": "boom", "category": "execution", "code": "script-timeout"},
            ),
            "run.failed",
        ),
        (
            RunScript(outcome="canceled", reason={"type": "terminated", "message": "user"}),
            "run.canceled",
        ),
    ],
)
async def test_each_terminal_status_arrives_once_verified(
    running: E2E, script: RunScript, event: str
) -> None:
    secret = await running.secret()
    run_id = running.intuned.state.create_run(script)
    sid = await running.subscribe(run_id, "/ok")
    await running.reach(sid, "delivered")
    [req] = running.receiver.requests
    payload = verify(req, secret)
    assert payload["type"] == event
    assert payload["data"]["status"] == event.removeprefix("run.")
    assert req.headers["user-agent"].startswith("intuned-relay/")
    assert req.headers["content-type"] == "application/json"
    if event == "run.failed":
        assert payload["data"]["error"]["code"] == "script-timeout"
    if event == "run.canceled":
        assert payload["data"]["reason"]["type"] == "terminated"


async def test_watch_failed_arrives_verified(running: E2E) -> None:
    secret = await running.secret()
    sid = await running.subscribe("never-existed", "/ok")
    await running.reach(sid, "delivered")
    payload = verify(running.receiver.requests[0], secret)
    assert payload["type"] == "run.watch_failed"
    assert payload["data"]["failure"]["code"] == "run_not_found"


async def test_receiver_failing_twice_gets_it_on_attempt_three_with_the_same_id(
    running: E2E,
) -> None:
    sid = await running.subscribe(running.run(**DONE), "/flaky/2")
    await running.reach(sid, "delivered")
    reqs = running.receiver.requests
    assert len(reqs) == 3
    assert len({r.webhook_id for r in reqs}) == 1
    assert len({r.body for r in reqs}) == 1  # the same bytes every time
    attempts = (await running.view(sid))["attempts"]
    assert [a["statusCode"] for a in attempts] == [500, 500, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["response"] == "flaky"


async def test_410_stops_delivery(running: E2E) -> None:
    sid = await running.subscribe(running.run(**DONE), "/gone")
    await running.reach(sid, "gone")
    assert len(running.receiver.requests) == 1
    assert (await running.view(sid))["nextAttemptAt"] is None


async def test_retry_after_is_honoured(e2e: E2E) -> None:
    # Retry-After 1 s is above the schedule's first delay (50 ms) and within its longest (2 s).
    await e2e.start_inproc_worker(RELAY_RETRY_SCHEDULE="50ms,2s")
    sid = await e2e.subscribe(e2e.run(**DONE), "/status/503?retry_after=1")
    await e2e.reach(sid, "exhausted", timeout=20)
    reqs = e2e.receiver.requests
    assert reqs[1].monotonic - reqs[0].monotonic >= 1.0


async def test_redirect_is_a_failure_and_not_followed(running: E2E) -> None:
    sid = await running.subscribe(running.run(**DONE), "/redirect")
    await running.reach(sid, "exhausted")
    assert {r.path for r in running.receiver.requests} == {"/redirect"}
    assert len(running.receiver.requests) == 4
    assert {a["error"] for a in (await running.view(sid))["attempts"]} == {"redirect"}


async def test_hanging_receiver_is_cut_at_the_timeout_and_retried(e2e: E2E) -> None:
    await e2e.start_inproc_worker(RELAY_RETRY_SCHEDULE="50ms")
    run_id = e2e.run(**DONE)
    hanging = await e2e.subscribe(run_id, "/slow/5000")
    fast = await e2e.subscribe(run_id, "/ok/fast")
    await e2e.reach(fast, "delivered", timeout=5)
    await e2e.reach(hanging, "exhausted", timeout=15)
    attempts = (await e2e.view(hanging))["attempts"]
    assert [a["error"] for a in attempts] == ["timeout", "timeout"]
    assert all(a["durationMs"] < 2500 for a in attempts)


async def test_exhausted_is_listed_then_redelivered_with_the_same_id(running: E2E) -> None:
    sid = await running.subscribe(running.run(**DONE), "/flaky/4")
    await running.reach(sid, "exhausted")
    listed = await running.api.get("/v1/subscriptions?state=exhausted", headers=AUTH_ALPHA)
    assert [s["id"] for s in listed.json()["items"]] == [sid]
    resp = await running.api.post(f"/v1/subscriptions/{sid}/redeliver", headers=AUTH_ALPHA)
    assert resp.status_code == 202
    await running.reach(sid, "delivered")
    reqs = running.receiver.requests
    assert len(reqs) == 5 and len({r.webhook_id for r in reqs}) == 1
    assert len({r.body for r in reqs}) == 1
    attempts = (await running.view(sid))["attempts"]
    assert attempts[-1]["statusCode"] == 200 and attempts[-1]["attempt"] == 1


async def test_rotation_signs_with_both_secrets(running: E2E) -> None:
    old = await running.secret()
    rotated = await running.api.post("/v1/signing-secret/rotate", headers=AUTH_ALPHA)
    new = rotated.json()["secret"]
    assert new != old
    assert await running.secret() == new
    sid = await running.subscribe(running.run(**DONE), "/ok")
    await running.reach(sid, "delivered")
    [req] = running.receiver.requests
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(req.body, req.headers)
    Webhook(new).verify(req.body, req.headers)
    beta = await running.secret(AUTH_BETA)
    with pytest.raises(Exception, match="signature"):
        Webhook(beta).verify(req.body, req.headers)


async def test_delete_during_retries_stops_them(e2e: E2E) -> None:
    await e2e.start_inproc_worker(RELAY_RETRY_SCHEDULE="300ms,300ms,300ms,300ms,300ms")
    sid = await e2e.subscribe(e2e.run(**DONE), "/status/500")
    await wait_until(lambda: len(e2e.receiver.requests) >= 1, timeout=10)
    assert (await e2e.api.delete(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).status_code == 204
    count = len(e2e.receiver.requests)
    await asyncio.sleep(1.2)
    assert len(e2e.receiver.requests) <= count + 1  # at most the attempt already in flight
    assert await e2e.state(sid) == "canceled"


async def test_sigkill_during_200_in_flight_deliveries_delivers_all(e2e: E2E) -> None:
    run_id = e2e.run(pending_polls=1, **DONE)
    sids = [await e2e.subscribe(run_id, f"/slow/400/{i}") for i in range(200)]
    first = e2e.start_worker(RELAY_WORKER_CONCURRENCY="256", RELAY_MAX_IN_FLIGHT_PER_HOST="256")
    await wait_until(lambda: len(e2e.receiver.requests) >= 20, timeout=20)
    first.kill()
    e2e.start_worker()
    await wait_until(
        lambda: len({r.webhook_id for r in e2e.receiver.requests}) == 200, timeout=60, interval=0.2
    )
    seen = {json.loads(r.body)["data"]["subscriptionId"] for r in e2e.receiver.requests}
    assert seen == set(sids)
    for sid in sids[:5]:
        await e2e.reach(sid, "delivered", timeout=20)
