"""End-to-end stories: API in-process, a real worker process, the fake Intuned and a receiver."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    StartWorker,
    subscription_state,
    wait_until,
)


async def secret_of(api: AsyncTestClient[Any], auth: dict[str, str]) -> str:
    resp = await api.get("/v1/signing-secret", headers=auth)
    assert resp.status_code == 200
    return str(resp.json()["secret"])


async def subscribe(
    api: AsyncTestClient[Any],
    run_id: str,
    url: str,
    auth: dict[str, str] = AUTH_ALPHA,
    **extra: Any,
) -> dict[str, Any]:
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url, **extra}
    resp = await api.post("/v1/subscriptions", json=body, headers=auth)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


async def test_completed_run_arrives_once_signed_with_intuned_fields_passed_through(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    run_id = fake_intuned.state.create_run(
        RunScript(
            pending_polls=2,
            started_polls=1,
            outcome="completed",
            result={"price": 12.50, "big": 12345678901234567890, "name": "café"},
        )
    )
    secret = await secret_of(api, AUTH_ALPHA)
    start_worker()
    sub = await subscribe(api, run_id, receiver.url("/ok/a"), metadata={"order": 7})
    assert sub["state"] == "watching"
    [req] = await receiver.wait_for_async(1, timeout=15)
    verify(req, secret)
    body = json.loads(req.body)
    assert body["type"] == "run.completed"
    data = body["data"]
    assert data["subscriptionId"] == sub["id"]
    assert data["runId"] == run_id and data["status"] == "completed"
    assert data["metadata"] == {"order": 7}
    assert b'"big":12345678901234567890' in req.body
    assert "café" in req.body.decode()
    await wait_until(lambda: _state_is(api, sub["id"], "delivered"))
    view = (await api.get(f"/v1/subscriptions/{sub['id']}", headers=AUTH_ALPHA)).json()
    assert view["runStatus"] == "completed"
    assert [a["statusCode"] for a in view["attempts"]] == [200]
    run = await api.get(f"/v1/runs/demo-project/{run_id}", headers=AUTH_ALPHA)
    assert run.status_code == 200
    assert run.json()["result"]["price"] == 12.5
    assert "fetchedAt" in run.json()


async def _state_is(api: AsyncTestClient[Any], sid: str, state: str) -> bool:
    return await subscription_state(api, sid, AUTH_ALPHA) == state


async def test_twenty_subscriptions_cost_the_same_polls_as_one(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    single = fake_intuned.state.create_run(
        RunScript(pending_polls=3, outcome="completed", result=1)
    )
    shared = fake_intuned.state.create_run(
        RunScript(pending_polls=3, outcome="completed", result=2)
    )
    start_worker()
    await subscribe(api, single, receiver.url("/ok/single"))
    for i in range(20):
        await subscribe(api, shared, receiver.url(f"/ok/shared-{i}"))
    await receiver.wait_for_async(21, timeout=20)
    assert fake_intuned.state.poll_count(shared) == fake_intuned.state.poll_count(single) == 4
