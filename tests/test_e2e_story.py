"""End-to-end stories: the API and a worker in-process, the fake Intuned and a receiver."""

from __future__ import annotations

import json

from tests.support.e2e import E2E
from tests.support.receiver import verify
from tests.support.relay_fixtures import AUTH_ALPHA


async def test_completed_run_arrives_once_signed_with_intuned_fields_passed_through(
    e2e: E2E,
) -> None:
    run_id = e2e.run(
        pending_polls=2,
        started_polls=1,
        outcome="completed",
        result={"price": 12.50, "big": 12345678901234567890, "name": "café"},
    )
    secret = await e2e.secret()
    await e2e.start_inproc_worker()
    sub = await e2e.register(run_id, "/ok/a", metadata={"order": 7})
    assert sub["state"] == "watching"
    [req] = await e2e.receiver.wait_for_async(1, timeout=15)
    verify(req, secret)
    body = json.loads(req.body)
    assert body["type"] == "run.completed"
    data = body["data"]
    assert data["subscriptionId"] == sub["id"]
    assert data["runId"] == run_id and data["status"] == "completed"
    assert data["metadata"] == {"order": 7}
    assert b'"big":12345678901234567890' in req.body
    assert "café" in req.body.decode()
    await e2e.reach(sub["id"], "delivered", timeout=10)
    view = await e2e.view(sub["id"])
    assert view["runStatus"] == "completed"
    assert [a["statusCode"] for a in view["attempts"]] == [200]
    run = await e2e.api.get(f"/v1/runs/demo-project/{run_id}", headers=AUTH_ALPHA)
    assert run.status_code == 200
    assert run.json()["result"]["price"] == 12.5
    assert "fetchedAt" in run.json()


async def test_twenty_subscriptions_cost_the_same_polls_as_one(e2e: E2E) -> None:
    single = e2e.run(pending_polls=3, outcome="completed", result=1)
    shared = e2e.run(pending_polls=3, outcome="completed", result=2)
    await e2e.start_inproc_worker()
    await e2e.subscribe(single, "/ok/single")
    for i in range(20):
        await e2e.subscribe(shared, f"/ok/shared-{i}")
    await e2e.receiver.wait_for_async(21, timeout=20)
    assert e2e.intuned.state.poll_count(shared) == e2e.intuned.state.poll_count(single) == 4
