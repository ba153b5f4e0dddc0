"""Per-subscription headers, the 409 on a changed re-registration, eventType and series, and
RELAY_RUN_SHARING=owner: over the API, with a worker and receiver where a webhook is sent (the
worker in the test's loop, or a process where its log file is read).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.api_helpers import api_client, api_env, body, everything
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    AUTH_BETA,
    reach_state,
    signing_secret_of,
    wait_until,
)
from tests.support.workers import StartInprocWorker, StartWorker

SUBS = "/v1/subscriptions"
SECRET_VALUE = "Bearer tok-7f3a9c-never-shown"


# ---- headers at registration (API only) ---------------------------------------------------


async def test_headers_are_stored_and_shown_redacted(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    async with api_client(api_env(redis_url)) as api:
        headers = {"Authorization": SECRET_VALUE, "X-Tenant": "billing"}
        resp = await api.post(SUBS, json=body(headers=headers), headers=AUTH_ALPHA)
        assert resp.status_code == 201, resp.text
        assert resp.json()["headers"] == {"Authorization": "***", "X-Tenant": "***"}
        assert SECRET_VALUE not in resp.text
        got = await api.get(f"{SUBS}/{resp.json()['id']}", headers=AUTH_ALPHA)
        assert got.json()["headers"] == {"Authorization": "***", "X-Tenant": "***"}
        listed = await api.get(SUBS, headers=AUTH_ALPHA)
        assert SECRET_VALUE not in listed.text
        plain = await api.post(SUBS, json=body(run="run-2"), headers=AUTH_ALPHA)
        assert plain.json()["headers"] == {}


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Host": "evil.example"}, "'Host'"),
        ({"Content-Type": "text/plain"}, "'Content-Type'"),
        ({"Transfer-Encoding": "chunked"}, "'Transfer-Encoding'"),
        ({"Connection": "close"}, "'Connection'"),
        ({"Proxy-Authorization": "x"}, "'Proxy-Authorization'"),
        ({"webhook-signature": "v1,forged"}, "'webhook-signature'"),
        ({"User-Agent": "me"}, "'User-Agent'"),
        ({"X-Bad": "a\r\nX-Injected: 1"}, "'X-Bad'"),
        ({f"X-{i}": "v" for i in range(11)}, "limit is 10"),
        ({"X-Big": "v" * 5000}, "4 KiB"),
    ],
)
async def test_forbidden_headers_are_a_400_naming_them_and_change_nothing(
    redis_sync: redis.Redis, redis_url: str, headers: dict[str, str], named: str
) -> None:
    async with api_client(api_env(redis_url)) as api:
        before = everything(redis_sync)
        resp = await api.post(SUBS, json=body(headers=headers), headers=AUTH_ALPHA)
        assert resp.status_code == 400, resp.text
        assert named in resp.json()["detail"]
        assert everything(redis_sync) == before


async def test_header_values_of_the_wrong_type_are_a_400(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    async with api_client(api_env(redis_url)) as api:
        resp = await api.post(SUBS, json=body(headers={"X-A": 1}), headers=AUTH_ALPHA)
        assert resp.status_code == 400
        assert "headers" in resp.json()["detail"]


# ---- the 409 and the idempotent repeat ----------------------------------------------------


async def test_same_registration_again_is_200_and_a_changed_one_is_409_naming_it(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    async with api_client(api_env(redis_url)) as api:
        first = body(metadata={"a": 1, "b": [2]}, headers={"Authorization": "one"})
        created = await api.post(SUBS, json=first, headers=AUTH_ALPHA)
        assert created.status_code == 201
        sid = created.json()["id"]
        # Same metadata (keys in another order), same header in another case: the same one.
        same = body(metadata={"b": [2], "a": 1}, headers={"authorization": "one"})
        again = await api.post(SUBS, json=same, headers=AUTH_ALPHA)
        assert again.status_code == 200 and again.json()["id"] == sid
        before = everything(redis_sync)
        for changed in (
            body(metadata={"a": 2}, headers={"Authorization": "one"}),
            body(metadata={"a": 1, "b": [2]}),
            body(metadata={"a": 1, "b": [2]}, headers={"Authorization": "one", "X-B": "2"}),
            body(metadata={"a": 1, "b": [2]}, headers={"Authorization": "rotated"}),  # a value
        ):
            resp = await api.post(SUBS, json=changed, headers=AUTH_ALPHA)
            assert resp.status_code == 409, resp.text
            assert sid in resp.json()["detail"]
            assert resp.json()["extra"] == {"code": "subscription_exists", "subscriptionId": sid}
        assert everything(redis_sync) == before
        # Another client registering the same thing is its own subscription (workspace mode).
        beta = await api.post(SUBS, json=body(metadata={"a": 2}), headers=AUTH_BETA)
        assert beta.status_code == 201 and beta.json()["id"] != sid


# ---- end to end: headers arrive, eventType and series --------------------------------------


async def test_headers_arrive_on_every_attempt_and_never_in_the_log(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    worker = start_worker()
    secret = await signing_secret_of(api)
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result={"x": 1}))
    headers = {"Authorization": SECRET_VALUE, "X-Tenant": "billing"}
    resp = await api.post(
        SUBS,
        json=body(run=run_id, url=receiver.url("/flaky/1"), headers=headers),
        headers=AUTH_ALPHA,
    )
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    await reach_state(api, sid, "delivered")
    reqs = receiver.requests
    assert len(reqs) == 2
    for req in reqs:
        assert req.headers["authorization"] == SECRET_VALUE
        assert req.headers["x-tenant"] == "billing"
        assert verify(req, secret)["type"] == "run.completed"
        assert req.headers["user-agent"].startswith("intuned-relay/")
    view = (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()
    assert view["eventType"] == "run.completed"
    assert [a["series"] for a in view["attempts"]] == [1, 1]
    # Redeliver: a second series, numbered 2.
    assert (await api.post(f"{SUBS}/{sid}/redeliver", headers=AUTH_ALPHA)).status_code == 202
    await wait_until(lambda: len(receiver.requests) == 3)
    await reach_state(api, sid, "delivered")
    view = (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()
    assert [a["series"] for a in view["attempts"]] == [1, 1, 2]
    assert receiver.requests[2].headers["authorization"] == SECRET_VALUE
    assert SECRET_VALUE not in worker.log_path.read_text()


async def test_watch_failed_shows_as_event_type(
    api: AsyncTestClient[Any], receiver: ReceiverHandle, start_inproc_worker: StartInprocWorker
) -> None:
    await start_inproc_worker()
    resp = await api.post(
        SUBS, json=body(run="never-existed", url=receiver.url("/ok")), headers=AUTH_ALPHA
    )
    sid = resp.json()["id"]
    assert resp.json()["eventType"] is None
    await reach_state(api, sid, "delivered")
    view = (await api.get(f"{SUBS}/{sid}", headers=AUTH_ALPHA)).json()
    assert view["eventType"] == "run.watch_failed"


# ---- RELAY_RUN_SHARING -----------------------------------------------------------------------


async def test_owner_sharing_hides_a_run_from_other_clients_and_fans_out_to_the_owner(
    redis_sync: redis.Redis,
    relay_env: dict[str, str],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
) -> None:
    env = {**relay_env, "RELAY_RUN_SHARING": "owner"}
    async with api_client(env) as api:
        run_id = fake_intuned.state.create_run(
            RunScript(pending_polls=2, outcome="completed", result=1)
        )
        sids = []
        for i in range(3):
            resp = await api.post(
                SUBS, json=body(run=run_id, url=receiver.url(f"/ok/{i}")), headers=AUTH_ALPHA
            )
            assert resp.status_code == 201, resp.text
            sids.append(resp.json()["id"])
        before = everything(redis_sync)
        stolen = await api.post(
            SUBS, json=body(run=run_id, url=receiver.url("/ok/beta")), headers=AUTH_BETA
        )
        assert stolen.status_code == 404, stolen.text
        assert run_id in stolen.json()["detail"]
        assert everything(redis_sync) == before
        await start_inproc_worker(RELAY_RUN_SHARING="owner")
        for sid in sids:
            await reach_state(api, sid, "delivered")
        assert {json.loads(r.body)["data"]["subscriptionId"] for r in receiver.requests} == set(
            sids
        )
        read = await api.get(f"/v1/runs/demo-project/{run_id}", headers=AUTH_ALPHA)
        assert read.status_code == 200 and read.json()["status"] == "completed"
        other = await api.get(f"/v1/runs/demo-project/{run_id}", headers=AUTH_BETA)
        assert other.status_code == 404
        # A late registration by another client (the result is cached): still 404, nothing sent.
        before = everything(redis_sync)
        late = await api.post(
            SUBS, json=body(run=run_id, url=receiver.url("/ok/late")), headers=AUTH_BETA
        )
        assert late.status_code == 404
        assert everything(redis_sync) == before
        assert not [r for r in receiver.requests if r.path == "/ok/late"]


async def test_workspace_sharing_lets_any_client_subscribe(
    redis_sync: redis.Redis, redis_url: str
) -> None:
    async with api_client(api_env(redis_url)) as api:
        a = await api.post(SUBS, json=body(run="shared-run"), headers=AUTH_ALPHA)
        b = await api.post(SUBS, json=body(run="shared-run"), headers=AUTH_BETA)
        assert (a.status_code, b.status_code) == (201, 201)
