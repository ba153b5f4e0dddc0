"""Delivery stories (issue 4): signed POSTs verified by `standardwebhooks`, retries, 410,
Retry-After, redirects, hangs, exhausted → redelivered, secret rotation, a SIGKILLed worker.

The relay runs with RELAY_RETRY_SCHEDULE=50ms,100ms,150ms (4 attempts) and a 1 s timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    AUTH_BETA,
    StartWorker,
    subscription_state,
    wait_until,
)


async def subscribe(
    api: AsyncTestClient[Any], run_id: str, url: str, auth: dict[str, str] = AUTH_ALPHA
) -> str:
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url}
    resp = await api.post("/v1/subscriptions", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def view(api: AsyncTestClient[Any], sid: str) -> dict[str, Any]:
    resp = await api.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)
    assert resp.status_code == 200
    return dict(resp.json())


async def reach(api: AsyncTestClient[Any], sid: str, state: str, timeout: float = 15) -> None:
    async def check() -> bool:
        return await subscription_state(api, sid, AUTH_ALPHA) == state

    await wait_until(check, timeout=timeout)


@pytest.fixture
def worker(start_worker: StartWorker) -> None:
    start_worker()


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
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
    script: RunScript,
    event: str,
) -> None:
    secret = (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    run_id = fake_intuned.state.create_run(script)
    sid = await subscribe(api, run_id, receiver.url("/ok"))
    await reach(api, sid, "delivered")
    [req] = receiver.requests
    payload = verify(req, secret)
    assert payload["type"] == event
    assert payload["data"]["status"] == event.removeprefix("run.")
    assert req.headers["user-agent"].startswith("intuned-relay/")
    assert req.headers["content-type"] == "application/json"
    if event == "run.failed":
        assert payload["data"]["error"]["code"] == "script-timeout"
    if event == "run.canceled":
        assert payload["data"]["reason"]["type"] == "terminated"


async def test_watch_failed_arrives_verified(
    api: AsyncTestClient[Any], receiver: ReceiverHandle, worker: None
) -> None:
    secret = (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    sid = await subscribe(api, "never-existed", receiver.url("/ok"))
    await reach(api, sid, "delivered")
    payload = verify(receiver.requests[0], secret)
    assert payload["type"] == "run.watch_failed"
    assert payload["data"]["failure"]["code"] == "run_not_found"


async def test_receiver_failing_twice_gets_it_on_attempt_three_with_the_same_id(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/flaky/2"))
    await reach(api, sid, "delivered")
    reqs = receiver.requests
    assert len(reqs) == 3
    assert len({r.webhook_id for r in reqs}) == 1
    assert len({r.body for r in reqs}) == 1  # the same bytes every time
    attempts = (await view(api, sid))["attempts"]
    assert [a["statusCode"] for a in attempts] == [500, 500, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["response"] == "flaky"


async def test_410_stops_delivery(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/gone"))
    await reach(api, sid, "gone")
    assert len(receiver.requests) == 1
    assert (await view(api, sid))["nextAttemptAt"] is None


async def test_retry_after_is_honoured(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    # Retry-After 1 s is above the schedule's first delay (50 ms) and within its longest (2 s).
    start_worker(RELAY_RETRY_SCHEDULE="50ms,2s")
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/status/503?retry_after=1"))
    await reach(api, sid, "exhausted", timeout=20)
    reqs = receiver.requests
    assert reqs[1].monotonic - reqs[0].monotonic >= 1.0


async def test_redirect_is_a_failure_and_not_followed(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/redirect"))
    await reach(api, sid, "exhausted")
    assert {r.path for r in receiver.requests} == {"/redirect"}
    assert len(receiver.requests) == 4
    assert {a["error"] for a in (await view(api, sid))["attempts"]} == {"redirect"}


async def test_hanging_receiver_is_cut_at_the_timeout_and_retried(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker(RELAY_RETRY_SCHEDULE="50ms")
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    hanging = await subscribe(api, run_id, receiver.url("/slow/5000"))
    fast = await subscribe(api, run_id, receiver.url("/ok/fast"))
    await reach(api, fast, "delivered", timeout=5)
    await reach(api, hanging, "exhausted", timeout=15)
    attempts = (await view(api, hanging))["attempts"]
    assert [a["error"] for a in attempts] == ["timeout", "timeout"]
    assert all(a["durationMs"] < 2500 for a in attempts)


async def test_exhausted_is_listed_then_redelivered_with_the_same_id(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/flaky/4"))
    await reach(api, sid, "exhausted")
    listed = await api.get("/v1/subscriptions?state=exhausted", headers=AUTH_ALPHA)
    assert [s["id"] for s in listed.json()["items"]] == [sid]
    resp = await api.post(f"/v1/subscriptions/{sid}/redeliver", headers=AUTH_ALPHA)
    assert resp.status_code == 202
    await reach(api, sid, "delivered")
    reqs = receiver.requests
    assert len(reqs) == 5 and len({r.webhook_id for r in reqs}) == 1
    assert len({r.body for r in reqs}) == 1
    attempts = (await view(api, sid))["attempts"]
    assert attempts[-1]["statusCode"] == 200 and attempts[-1]["attempt"] == 1


async def test_rotation_signs_with_both_secrets(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    worker: None,
) -> None:
    old = (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    new = (await api.post("/v1/signing-secret/rotate", headers=AUTH_ALPHA)).json()["secret"]
    assert new != old
    assert (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"] == new
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/ok"))
    await reach(api, sid, "delivered")
    [req] = receiver.requests
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(req.body, req.headers)
    Webhook(new).verify(req.body, req.headers)
    beta = (await api.get("/v1/signing-secret", headers=AUTH_BETA)).json()["secret"]
    with pytest.raises(Exception, match="signature"):
        Webhook(beta).verify(req.body, req.headers)


async def test_delete_during_retries_stops_them(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    start_worker(RELAY_RETRY_SCHEDULE="300ms,300ms,300ms,300ms,300ms")
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    sid = await subscribe(api, run_id, receiver.url("/status/500"))
    await wait_until(lambda: len(receiver.requests) >= 1, timeout=10)
    assert (await api.delete(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).status_code == 204
    count = len(receiver.requests)
    await asyncio.sleep(1.2)
    assert len(receiver.requests) <= count + 1  # at most the attempt already in flight
    assert await subscription_state(api, sid, AUTH_ALPHA) == "canceled"


async def test_sigkill_during_200_in_flight_deliveries_delivers_all(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, outcome="completed", result=1)
    )
    sids = [await subscribe(api, run_id, receiver.url(f"/slow/400/{i}")) for i in range(200)]
    first = start_worker(RELAY_WORKER_CONCURRENCY="256", RELAY_MAX_IN_FLIGHT_PER_HOST="256")
    await wait_until(lambda: len(receiver.requests) >= 20, timeout=20)
    first.kill()
    start_worker()
    await wait_until(
        lambda: len({r.webhook_id for r in receiver.requests}) == 200, timeout=60, interval=0.2
    )
    seen = {json.loads(r.body)["data"]["subscriptionId"] for r in receiver.requests}
    assert seen == set(sids)
    for sid in sids[:5]:
        await reach(api, sid, "delivered", timeout=20)
