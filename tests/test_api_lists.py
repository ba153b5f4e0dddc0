"""Listing, paging, filtering, canceling and redelivering a client's subscriptions."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.model import now_ms, run_key
from relay.store import Stores, run_digest
from tests.support.api_helpers import body, make_doc
from tests.support.relay_fixtures import AUTH_ALPHA, subscription_view
from tests.support.store_helpers import finish_run

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUBS = "/v1/subscriptions"


@pytest.fixture
def api(shared_api: AsyncTestClient[Any], redis_sync: redis.Redis) -> AsyncTestClient[Any]:
    """The API on a flushed Redis."""
    return shared_api


async def create(api: AsyncTestClient[Any], **fields: Any) -> str:
    """Register a subscription of alpha; its id."""
    resp = await api.post(SUBS, json=body(**fields), headers=AUTH_ALPHA)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def listing(api: AsyncTestClient[Any], query: str = "") -> dict[str, Any]:
    resp = await api.get(SUBS + query, headers=AUTH_ALPHA)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def cancel(api: AsyncTestClient[Any], sid: str) -> httpx.Response:
    return await api.delete(f"{SUBS}/{sid}", headers=AUTH_ALPHA)


async def redeliver(api: AsyncTestClient[Any], sid: str) -> httpx.Response:
    return await api.post(f"{SUBS}/{sid}/redeliver", headers=AUTH_ALPHA)


async def all_pages(api: AsyncTestClient[Any], limit: int, extra: str = "") -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}{extra}" + (f"&cursor={cursor}" if cursor else "")
        page = await listing(api, query)
        pages.append([item["id"] for item in page["items"]])
        cursor = page["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "paging does not end"


async def same_millisecond(store: Stores, n: int, at: int, run: str = "r") -> list[str]:
    """``n`` subscriptions of alpha all created in millisecond ``at``."""
    ids = []
    for i in range(n):
        doc = make_doc("alpha", "demo-project", f"{run}{i}", at)
        await store.subscriptions.register(
            doc, run_key(doc.project_name, doc.run_id), "whsec_dGVzdA=="
        )
        ids.append(doc.id)
    return ids


async def test_newest_first(api: AsyncTestClient[Any]) -> None:
    made = []
    for i in range(4):
        made.append(await create(api, run=f"run-{i}"))
        await asyncio.sleep(0.003)  # distinct creation milliseconds
    page = await listing(api)
    assert [item["id"] for item in page["items"]] == made[::-1]
    assert page["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5", ""])
async def test_limit_outside_1_to_200_is_400(api: AsyncTestClient[Any], limit: str) -> None:
    resp = await api.get(f"{SUBS}?limit={limit}", headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert "limit" in resp.json()["detail"]


@pytest.mark.parametrize("limit", [1, 200])
async def test_limit_bounds_are_inclusive(api: AsyncTestClient[Any], limit: int) -> None:
    await create(api)
    assert len((await listing(api, f"?limit={limit}"))["items"]) == 1


async def test_cursor_is_stable_across_items_of_one_millisecond(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    at = now_ms()
    older = await same_millisecond(shared_store, 2, at - 1000, run="old")
    tied = await same_millisecond(shared_store, 8, at)
    pages = await all_pages(api, limit=3)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    seen = [sid for page in pages for sid in page]
    # newest millisecond first; within one millisecond a fixed order (by id, descending)
    assert seen == sorted(tied, reverse=True) + sorted(older, reverse=True)


async def test_items_created_while_paging_neither_repeat_nor_hide_others(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    at = now_ms() - 10_000
    existing = await same_millisecond(shared_store, 6, at)
    first = await listing(api, "?limit=2")
    await create(api, run="newcomer")  # newer than everything: belongs on page one
    await same_millisecond(shared_store, 2, at, run="late")  # same millisecond as the cursor
    seen = [item["id"] for item in first["items"]]
    cursor = first["nextCursor"]
    while cursor:
        page = await listing(api, f"?limit=2&cursor={cursor}")
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
    assert len(seen) == len(set(seen))
    assert set(existing) <= set(seen)


async def test_last_page_has_no_cursor_even_when_it_is_full(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    # Regression: a page of exactly `limit` items always came with a nextCursor, which led
    # to an empty page.
    await same_millisecond(shared_store, 6, now_ms())
    assert [len(p) for p in await all_pages(api, limit=3)] == [3, 3]
    assert [len(p) for p in await all_pages(api, limit=6)] == [6]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "%FF%FE", b64("no-colon"), b64("abc:sub_x"), b64(":sub_x"), b64("12:"), "x" * 513],
    ids=["punctuation", "not utf-8", "no colon", "no number", "empty number", "no id", "long"],
)
async def test_malformed_cursor_is_400(api: AsyncTestClient[Any], cursor: str) -> None:
    resp = await api.get(f"{SUBS}?cursor={cursor}", headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert "cursor" in resp.json()["detail"]


async def test_state_filter(api: AsyncTestClient[Any]) -> None:
    a, b, c = [await create(api, run=f"s{i}") for i in range(3)]
    assert (await cancel(api, b)).status_code == 204
    watching = await listing(api, "?state=watching")
    assert {i["id"] for i in watching["items"]} == {a, c}
    canceled = await listing(api, "?state=canceled")
    assert [i["id"] for i in canceled["items"]] == [b]
    assert canceled["items"][0]["state"] == "canceled"
    assert (await listing(api, "?state=delivered"))["items"] == []


@pytest.mark.parametrize("state", ["bogus", "WATCHING", "", "watching,canceled"])
async def test_unknown_state_is_400(api: AsyncTestClient[Any], state: str) -> None:
    resp = await api.get(f"{SUBS}?state={state}", headers=AUTH_ALPHA)
    assert resp.status_code == 400, resp.text
    assert "state" in resp.json()["detail"]


async def test_run_id_filter(api: AsyncTestClient[Any]) -> None:
    one = await create(api, run="one")
    two = [await create(api, run="two", url=f"https://hooks.example/{i}") for i in range(3)]
    assert [i["id"] for i in (await listing(api, "?runId=one"))["items"]] == [one]
    pages = await all_pages(api, limit=2, extra="&runId=two")
    assert sorted(sid for page in pages for sid in page) == sorted(two)
    assert (await listing(api, "?runId=three"))["items"] == []
    assert (await listing(api, "?runId=one&state=canceled"))["items"] == []
    resp = await api.get(f"{SUBS}?runId={'r' * 129}", headers=AUTH_ALPHA)
    assert resp.status_code == 400 and "runId" in resp.json()["detail"]


async def test_delete_is_204_then_canceled_and_idempotent(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    sid = await create(api, run="to-cancel")
    first = await cancel(api, sid)
    assert first.status_code == 204 and first.content == b""
    got = await subscription_view(api, sid)
    assert got["state"] == "canceled" and got["nextAttemptAt"] is None
    # Deleting again is still 204 (idempotent), and changes nothing.
    again = await cancel(api, sid)
    assert again.status_code == 204
    assert (await subscription_view(api, sid)) == got
    # The run's last subscription is gone: its polling stopped.
    watch = await shared_store.watches.get_watch(run_digest(run_key("demo-project", "to-cancel")))
    assert watch is not None and watch.state == "idle"
    assert await shared_store.housekeeping.watched_runs() == 0


async def test_redeliver_is_409_until_the_run_is_terminal(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    sid = await create(api, run="pending-run")
    resp = await redeliver(api, sid)
    assert resp.status_code == 409, resp.text
    assert "watching" in resp.json()["detail"]
    result = msgspec.json.encode({"runId": "pending-run", "status": "failed", "error": "x"})
    rk = run_key("demo-project", "pending-run")
    await finish_run(shared_store, rk, "failed", result)
    resp = await redeliver(api, sid)
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] == "delivering" and resp.json()["runStatus"] == "failed"
    assert (await cancel(api, sid)).status_code == 204
    resp = await redeliver(api, sid)
    assert resp.status_code == 409 and "canceled" in resp.json()["detail"]


async def test_redeliver_of_a_skipped_subscription_is_409(
    api: AsyncTestClient[Any], shared_store: Stores
) -> None:
    sid = await create(api, run="skipper", events=["failed"])
    result = msgspec.json.encode({"runId": "skipper", "status": "completed"})
    await finish_run(shared_store, run_key("demo-project", "skipper"), "completed", result)
    assert (await subscription_view(api, sid))["state"] == "skipped"
    resp = await redeliver(api, sid)
    assert resp.status_code == 409 and "skipped" in resp.json()["detail"]
