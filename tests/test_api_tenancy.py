"""Isolation: client beta, using every route with client alpha's ids, gets 404 and changes nothing.

Alpha owns a watched run and a completed one (its result cached, its webhook delivered, with an
attempt log), set up through the API and the store's own transitions,
as a worker would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis
from litestar.testing import AsyncTestClient

from relay.model import Attempt, DeliveryOutcome, now_ms, run_key
from relay.store import Stores, run_digest
from tests.support.api_helpers import body, everything
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA
from tests.support.store_helpers import finish_run

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUBS = "/v1/subscriptions"
PROJECT = "alpha-project"


@pytest.fixture
def api(shared_api: AsyncTestClient[Any], redis_sync: redis.Redis) -> AsyncTestClient[Any]:
    """The API on a flushed Redis."""
    return shared_api


@dataclass
class AlphaWorld:
    watching: str  # subscription id on a run still being polled
    delivered: str  # subscription id whose webhook went out
    watched_run: str
    done_run: str


async def create(api: AsyncTestClient[Any], auth: dict[str, str], **fields: Any) -> str:
    resp = await api.post(SUBS, json=body(**fields), headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@pytest_asyncio.fixture(loop_scope="module")
async def alpha(api: AsyncTestClient[Any], shared_store: Stores) -> AlphaWorld:
    watching = await create(api, AUTH_ALPHA, project=PROJECT, run="watched")
    delivered = await create(api, AUTH_ALPHA, project=PROJECT, run="done", metadata={"a": 1})
    now = now_ms()
    result = msgspec.json.encode({"runId": "done", "status": "completed", "result": {"n": 42}})
    await finish_run(shared_store, run_key(PROJECT, "done"), "completed", result)
    [claim] = await shared_store.deliveries.claim_deliveries(10, only=delivered)
    attempt = Attempt(attempt=1, at=now, status_code=200, error=None, duration_ms=3.0)
    rec = await shared_store.deliveries.record_attempt(claim, attempt, DeliveryOutcome.DELIVERED, 0)
    assert rec.state == "delivered"
    return AlphaWorld(watching, delivered, "watched", "done")


def beta_calls(sid: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"{SUBS}/{sid}"),
        ("DELETE", f"{SUBS}/{sid}"),
        ("POST", f"{SUBS}/{sid}/redeliver"),
    ]


async def test_alphas_subscriptions_do_not_exist_for_beta(
    api: AsyncTestClient[Any], redis_sync: redis.Redis, alpha: AlphaWorld
) -> None:
    before = everything(redis_sync)
    for sid in (alpha.watching, alpha.delivered):
        for method, path in beta_calls(sid):
            resp = await api.request(method, path, headers=AUTH_BETA)
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json()["detail"] == f"no subscription {sid}"
    assert everything(redis_sync) == before
    # ... while alpha sees both, unchanged
    mine = (await api.get(f"{SUBS}/{alpha.watching}", headers=AUTH_ALPHA)).json()
    assert mine["state"] == "watching"
    done = (await api.get(f"{SUBS}/{alpha.delivered}", headers=AUTH_ALPHA)).json()
    assert done["state"] == "delivered" and [a["statusCode"] for a in done["attempts"]] == [200]


async def test_beta_deleting_alphas_subscription_does_not_stop_its_polling(
    api: AsyncTestClient[Any], shared_store: Stores, alpha: AlphaWorld
) -> None:
    resp = await api.delete(f"{SUBS}/{alpha.watching}", headers=AUTH_BETA)
    assert resp.status_code == 404
    watch = await shared_store.watches.get_watch(run_digest(run_key(PROJECT, alpha.watched_run)))
    assert watch is not None and watch.state == "watching"
    assert await shared_store.housekeeping.watched_runs() == 1
    got = await api.get(f"{SUBS}/{alpha.watching}", headers=AUTH_ALPHA)
    assert got.json()["state"] == "watching"


async def test_beta_cannot_redeliver_alphas_event(
    api: AsyncTestClient[Any], shared_store: Stores, alpha: AlphaWorld
) -> None:
    resp = await api.post(f"{SUBS}/{alpha.delivered}/redeliver", headers=AUTH_BETA)
    assert resp.status_code == 404
    sub = await shared_store.subscriptions.get_subscription_any(alpha.delivered)
    assert sub is not None and sub.series == 1 and sub.state.value == "delivered"
    # alpha can, and starts a fresh attempt series
    mine = await api.post(f"{SUBS}/{alpha.delivered}/redeliver", headers=AUTH_ALPHA)
    assert mine.status_code == 202 and mine.json()["state"] == "delivering"
    sub = await shared_store.subscriptions.get_subscription_any(alpha.delivered)
    assert sub is not None and sub.series == 2


async def test_a_run_only_alpha_subscribed_to_does_not_exist_for_beta(
    api: AsyncTestClient[Any], alpha: AlphaWorld
) -> None:
    done = f"/v1/runs/{PROJECT}/{alpha.done_run}"
    mine = await api.get(done, headers=AUTH_ALPHA)
    assert mine.status_code == 200 and mine.json()["result"] == {"n": 42}
    for path in (done, f"/v1/runs/{PROJECT}/{alpha.watched_run}"):
        theirs = await api.get(path, headers=AUTH_BETA)
        assert theirs.status_code == 404, theirs.text
        assert "42" not in theirs.text
    # Subscribing to the run is what grants reading it: then beta sees the same cached result.
    await create(api, AUTH_BETA, project=PROJECT, run=alpha.done_run)
    theirs = await api.get(done, headers=AUTH_BETA)
    assert theirs.status_code == 200 and theirs.json()["result"] == {"n": 42}


async def test_lists_never_show_another_clients_items(
    api: AsyncTestClient[Any], alpha: AlphaWorld
) -> None:
    queries = ["", "?state=watching", "?state=delivered", "?runId=done", "?runId=watched"]
    for query in queries:
        theirs = await api.get(SUBS + query, headers=AUTH_BETA)
        assert theirs.status_code == 200
        assert theirs.json() == {"items": [], "nextCursor": None}, query
    page = (await api.get(f"{SUBS}?limit=1", headers=AUTH_ALPHA)).json()
    assert page["nextCursor"] and len(page["items"]) == 1
    # alpha's cursor is only a position: beta reading from it still sees only beta's items
    own = await create(api, AUTH_BETA, project="beta-project", run="b1")
    theirs = (await api.get(f"{SUBS}?cursor={page['nextCursor']}", headers=AUTH_BETA)).json()
    assert [i["id"] for i in theirs["items"]] in ([], [own])
    everything_of_beta = (await api.get(SUBS, headers=AUTH_BETA)).json()["items"]
    assert [i["id"] for i in everything_of_beta] == [own]


async def test_shared_run_alpha_canceling_leaves_betas_watch_running(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    a = await create(api, AUTH_ALPHA, project=PROJECT, run="shared")
    b = await create(api, AUTH_BETA, project=PROJECT, run="shared")
    assert (await api.delete(f"{SUBS}/{a}", headers=AUTH_ALPHA)).status_code == 204
    watch = await shared_store.watches.get_watch(run_digest(run_key(PROJECT, "shared")))
    assert watch is not None and watch.state == "watching"
    theirs = (await api.get(f"{SUBS}/{b}", headers=AUTH_BETA)).json()
    assert theirs["state"] == "watching"
    assert (await api.get(f"{SUBS}/{b}", headers=AUTH_ALPHA)).status_code == 404


async def test_signing_secrets_differ_per_client_and_rotate_independently(
    api: AsyncTestClient[Any],
) -> None:
    async def secret(auth: dict[str, str]) -> str:
        resp = await api.get("/v1/signing-secret", headers=auth)
        assert resp.status_code == 200
        value = str(resp.json()["secret"])
        assert value.startswith("whsec_")
        return value

    a1, b1 = await secret(AUTH_ALPHA), await secret(AUTH_BETA)
    assert a1 != b1
    assert await secret(AUTH_ALPHA) == a1  # stable until rotated
    rotated = await api.post("/v1/signing-secret/rotate", headers=AUTH_BETA)
    b2 = rotated.json()["secret"]
    assert rotated.status_code == 200 and b2 not in (a1, b1)
    assert await secret(AUTH_ALPHA) == a1 and await secret(AUTH_BETA) == b2
    a2 = (await api.post("/v1/signing-secret/rotate", headers=AUTH_ALPHA)).json()["secret"]
    assert a2 not in (a1, b1, b2) and await secret(AUTH_BETA) == b2


@pytest.mark.parametrize("suffix", [":a", ":b", ":st:watching", "*", ":"])
async def test_ids_that_name_other_keys_are_404_not_500(
    api: AsyncTestClient[Any], redis_sync: redis.Redis, alpha: AlphaWorld, suffix: str
) -> None:
    # Regression: "GET /v1/subscriptions/<sid>:a" read the attempt-log LIST as the
    # subscription HASH: Redis answered WRONGTYPE and the API a 500.
    before = everything(redis_sync)
    for auth in (AUTH_ALPHA, AUTH_BETA):
        for method, path in beta_calls(alpha.delivered + suffix):
            resp = await api.request(method, path, headers=auth)
            assert resp.status_code == 404, (method, path, resp.text)
    for method, path in beta_calls("sub_x" + suffix):
        resp = await api.request(method, path, headers=AUTH_ALPHA)
        assert resp.status_code == 404, (method, path, resp.text)
    assert everything(redis_sync) == before
