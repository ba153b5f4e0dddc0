"""``run.started`` end to end: the API and a worker in-process, the fake Intuned and a
receiver over sockets. A subscription that asked for ``started`` gets one signed ``run.started``
(its own ``webhook-id``) and then its terminal event; one that did not gets the terminal event
only; the attempt log says which event each attempt carried."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    reach_state,
    signing_secret_of,
)
from tests.support.workers import StartInprocWorker


async def subscribe(api: AsyncTestClient[Any], run_id: str, url: str, **extra: Any) -> str:
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url, **extra}
    resp = await api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_started_then_completed_for_who_asked_completed_only_for_the_others(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
) -> None:
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, started_polls=3, outcome="completed", result={"n": 1})
    )
    secret = await signing_secret_of(api)
    asked = await subscribe(
        api, run_id, receiver.url("/ok/asked"), events=["started", "completed"], metadata={"k": 1}
    )
    plain = await subscribe(api, run_id, receiver.url("/ok/plain"))
    await start_inproc_worker()
    requests = await receiver.wait_for_async(3, timeout=20)
    by_path: dict[str, list[dict[str, Any]]] = {}
    ids: dict[str, set[str]] = {}
    for req in requests:
        verify(req, secret)
        by_path.setdefault(req.path, []).append(json.loads(req.body))
        ids.setdefault(req.path, set()).add(str(req.webhook_id))
    assert sorted(b["type"] for b in by_path["/ok/asked"]) == ["run.completed", "run.started"]
    assert [b["type"] for b in by_path["/ok/plain"]] == ["run.completed"]
    assert len(ids["/ok/asked"]) == 2  # one webhook-id per event
    [started] = [b for b in by_path["/ok/asked"] if b["type"] == "run.started"]
    assert started["data"] == {
        "subscriptionId": asked,
        "workspaceId": started["data"]["workspaceId"],
        "projectName": "demo-project",
        "runId": run_id,
        "status": "started",
        "metadata": {"k": 1},
    }
    await reach_state(api, asked, "delivered", AUTH_ALPHA)
    await reach_state(api, plain, "delivered", AUTH_ALPHA)
    view = (await api.get(f"/v1/subscriptions/{asked}", headers=AUTH_ALPHA)).json()
    assert view["events"] == ["completed", "started"]
    assert sorted(a["eventType"] for a in view["attempts"]) == ["run.completed", "run.started"]
    assert view["eventType"] == "run.completed" and view["state"] == "delivered"


async def test_started_alone_is_accepted_and_listed(api: AsyncTestClient[Any]) -> None:
    sid = await subscribe(api, "run-x", "http://127.0.0.1:9/ok", events=["started"])
    view = (await api.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).json()
    assert view["events"] == ["started"]
    bad = await api.post(
        "/v1/subscriptions",
        json={
            "projectName": "demo-project",
            "runId": "run-y",
            "callbackUrl": "http://127.0.0.1:9/ok",
            "events": ["begun"],
        },
        headers=AUTH_ALPHA,
    )
    assert bad.status_code == 400 and "events" in bad.json()["detail"]
