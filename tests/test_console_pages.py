"""The console's pages over HTTP: paging and filters (bounded), the overview's facts, bulk
redeliver with a real worker, and the pure pieces (chart, shortened event body).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from relay.console.chart import delivery_chart
from relay.console.views import RESULT_SHOWN, shortened_event
from relay.errors import ConfigError
from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import EVENT_STATUSES, Attempt, DeliveryOutcome, SubState, run_key
from relay.services import subscriptions as subs_service
from relay.services.overview import Minute
from relay.services.subscriptions import SCAN_LIMIT, Filters
from relay.settings import Settings
from relay.store import Stores, run_digest
from tests.support.api_helpers import api_client, api_env, make_doc
from tests.support.console import post_form, sign_in
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import (
    ALPHA_KEY,
    AUTH_ALPHA,
    subscribe,
    subscription_state,
    wait_until,
)
from tests.support.store_helpers import finish_run, open_stores
from tests.support.workers import StartInprocWorker

_ROW = re.compile(r'href="/console/subscriptions/(sub_[^"/]+)"')


@pytest.fixture
async def store(redis_sync: redis.Redis, redis_url: str) -> AsyncIterator[Stores]:
    client = aioredis.Redis.from_url(redis_url)
    yield open_stores(client)
    await client.aclose()


@pytest.fixture
async def console(redis_sync: redis.Redis, redis_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with api_client(api_env(redis_url, RELAY_CONSOLE_SECURE_COOKIE="false")) as client:
        client.follow_redirects = False
        assert (await sign_in(client, ALPHA_KEY)).status_code == 303
        yield client


async def _seed(store: Stores, n: int, *, start: int = 1_000_000) -> list[str]:
    """``n`` of alpha's subscriptions, newest last: runs r0..r2, hosts a/b.example alternating."""
    ids = []
    for i in range(n):
        doc = make_doc("alpha", "demo-project", f"r{i % 3}", start + i)
        doc = msgspec.structs.replace(doc, callback_url=f"https://{'ab'[i % 2]}.example/h/{i}")
        rk = run_key(doc.project_name, doc.run_id)
        await store.subscriptions.register(doc, rk, "whsec_dGVzdA==")
        ids.append(doc.id)
    return ids


def _rows(html: str) -> list[str]:
    return _ROW.findall(html)


def _next_link(html: str) -> str | None:
    found = re.search(r'href="(/console/subscriptions\?[^"]*cursor=[^"]*)" rel="next"', html)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_subscriptions_are_paged_newest_first(
    console: AsyncTestClient[Any], store: Stores
) -> None:
    ids = await _seed(store, 60)
    first = await console.get("/console/subscriptions")
    assert first.status_code == 200
    assert _rows(first.text) == ids[::-1][:50]
    link = _next_link(first.text)
    assert link is not None
    second = await console.get(link)
    assert _rows(second.text) == ids[::-1][50:]
    assert _next_link(second.text) is None
    assert "First page" in second.text


async def test_filters_by_state_run_and_host(console: AsyncTestClient[Any], store: Stores) -> None:
    ids = await _seed(store, 12)
    by_run = await console.get("/console/subscriptions?run=r1")
    assert _rows(by_run.text) == [s for i, s in enumerate(ids) if i % 3 == 1][::-1]
    by_host = await console.get("/console/subscriptions?host=B.example&run=r1")
    assert _rows(by_host.text) == [s for i, s in enumerate(ids) if i % 3 == 1 and i % 2][::-1]
    watching = await console.get("/console/subscriptions?state=watching&host=")
    assert len(_rows(watching.text)) == 12
    assert _rows((await console.get("/console/subscriptions?state=delivered")).text) == []
    bad = await console.get("/console/subscriptions?state=lost")
    assert bad.status_code == 400
    assert "state must be one of" in bad.text
    assert bad.headers["content-type"].startswith("text/html")


async def test_a_filtered_listing_examines_a_bounded_number_per_page(store: Stores) -> None:
    await _seed(store, SCAN_LIMIT + 50)
    nowhere = Filters(host="nowhere.example")
    page = await subs_service.list_subscriptions(
        store.subscriptions, "alpha", nowhere, limit=50, cursor=None
    )
    assert page.items == []
    assert page.scanned == SCAN_LIMIT
    assert page.next_cursor is not None
    rest = await subs_service.list_subscriptions(
        store.subscriptions, "alpha", nowhere, limit=50, cursor=page.next_cursor
    )
    assert (rest.scanned, rest.next_cursor) == (50, None)


async def test_overview_counts_watched_runs_and_the_oldest_pending_delivery(
    console: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
) -> None:
    # A failed first attempt waits an hour: pending.
    await start_inproc_worker(RELAY_RETRY_SCHEDULE="1h")
    done = fake_intuned.state.create_run(RunScript(outcome="completed", result={"n": 1}))
    later = fake_intuned.state.create_run(RunScript(pending_polls=10_000))
    pending = (await subscribe(console, done, receiver.url("/status/503")))["id"]
    await subscribe(console, later, receiver.url("/ok"))

    async def attempted() -> bool:
        resp = await console.get(f"/v1/subscriptions/{pending}", headers=AUTH_ALPHA)
        return bool(resp.json()["attempts"])

    await wait_until(attempted, timeout=20)
    page = (await console.get("/console")).text
    assert re.search(r'<span class="n">1</span> <span class="state state-delivering">', page)
    assert f'href="/console/subscriptions/{pending}"' in page  # the oldest pending delivery
    assert f"demo-project/{later}" in page  # a watched run
    detail = (await console.get(f"/console/subscriptions/{pending}")).text
    assert "http_503" in detail
    assert "Next attempt" in detail


async def test_bulk_redeliver_gives_every_exhausted_subscription_a_fresh_series(
    console: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
) -> None:
    await start_inproc_worker()
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result={"n": 1}))
    subs = [await subscribe(console, run_id, receiver.url(f"/flaky/4/{i}")) for i in range(3)]

    async def states() -> set[str]:
        return {await subscription_state(console, sub["id"], AUTH_ALPHA) for sub in subs}

    await wait_until(lambda: _equals(states(), {"exhausted"}), timeout=20)
    listing = await console.get("/console/subscriptions?state=exhausted")
    assert "Redeliver all exhausted (3)" in listing.text
    resp = await post_form(
        console, "/console/subscriptions?state=exhausted", "/console/redeliver-exhausted"
    )
    assert resp.status_code == 303
    shown = await console.get(resp.headers["location"])
    assert "Redelivered 3; 0 still exhausted." in shown.text
    await wait_until(lambda: _equals(states(), {"delivered"}), timeout=20)


async def _equals(value: Any, expected: set[str]) -> bool:
    return bool(await value == expected)


def test_the_chart_draws_one_bar_per_busy_minute_and_says_the_totals() -> None:
    minutes = [Minute(start=60_000 * i, delivered=i % 3, failed=i % 2) for i in range(60)]
    svg = str(delivery_chart(minutes))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    delivered = sum(m.delivered for m in minutes)
    failed = sum(m.failed for m in minutes)
    assert f"Last hour: {delivered} delivered, {failed} failed attempts" in svg
    assert svg.count('class="ok"') == sum(1 for m in minutes if m.delivered)
    assert svg.count('class="bad"') == sum(1 for m in minutes if m.failed)
    assert 'class="ok"' not in str(delivery_chart([Minute(start=0, delivered=0, failed=0)]))


def test_the_event_body_shows_a_shortened_result() -> None:
    body = msgspec.json.encode(
        {"type": "run.completed", "data": {"result": {"rows": list(range(500))}, "runId": "r"}}
    )
    shown = shortened_event(body)
    assert shown is not None
    assert '"runId": "r"' in shown
    assert "characters in all" in shown
    assert len(shown) < RESULT_SHOWN + 300
    small = shortened_event(b'{"data": {"result": [1, 2]}}')
    assert small is not None and "characters in all" not in small
    assert shortened_event(None) is None


def test_console_settings_have_safe_defaults() -> None:
    env = api_env("redis://127.0.0.1:1/0")
    settings = Settings.from_env(env)
    assert settings.console_secure_cookie is None  # auto: Secure behind https
    for value, meant in (("auto", None), ("true", True), ("false", False), ("", None)):
        env["RELAY_CONSOLE_SECURE_COOKIE"] = value
        assert Settings.from_env(env).console_secure_cookie is meant
    env["RELAY_CONSOLE_SECURE_COOKIE"] = "sometimes"
    with pytest.raises(ConfigError, match=r"RELAY_CONSOLE_SECURE_COOKIE.*auto, true or false"):
        Settings.from_env(env)
    assert settings.console_session_ttl == 3600
    assert settings.console_signin_limit == 10


async def test_the_event_source_and_oldest_pending_are_read_for_their_client_only(
    store: Stores,
) -> None:
    older = make_doc("beta", "demo-project", "run-e", 1_000)
    newer = make_doc("beta", "demo-project", "run-e", 2_000)
    newer = msgspec.structs.replace(newer, callback_url="https://b.example/h")
    rk = run_key("demo-project", "run-e")
    for doc in (newer, older):
        await store.subscriptions.register(doc, rk, "whsec_dGVzdA==")
    subs = store.subscriptions
    assert await subs.event_source(older.id, "beta") is None  # the run has not ended
    assert await finish_run(store, rk, "completed", b'{"status":"completed","result":[7]}') == 2
    source = await subs.event_source(older.id, "beta")
    assert source is not None
    assert source.event_type == "run.completed"
    assert source.result == b'{"status":"completed","result":[7]}'
    assert await subs.event_source(older.id, "alpha") is None
    oldest = await subs.oldest_in_state("beta", SubState.DELIVERING)
    assert oldest is not None and oldest.doc.id == older.id
    assert await subs.oldest_in_state("alpha", SubState.DELIVERING) is None
    detail = await subs_service.subscription_detail(subs, "beta", older.id)
    assert detail.event_body is not None
    assert b'"result":[7]' in detail.event_body


async def test_send_test_posts_a_signed_ping_and_shows_the_outcome(
    console: AsyncTestClient[Any], receiver: ReceiverHandle
) -> None:
    url = receiver.url("/ok/ping")
    resp = await post_form(console, "/console/signing", "/console/test-delivery", callback_url=url)
    assert resp.status_code == 200, resp.text
    assert "Test delivery delivered: HTTP 200" in resp.text
    [req] = await receiver.wait_for_async(1, timeout=10)
    assert json.loads(req.body)["type"] == "relay.ping"
    assert req.headers["webhook-signature"].startswith("v1,")


async def test_send_test_refuses_a_bad_url_and_sends_nothing(
    console: AsyncTestClient[Any], receiver: ReceiverHandle
) -> None:
    resp = await post_form(
        console, "/console/signing", "/console/test-delivery", callback_url="ftp://x.example/h"
    )
    assert resp.status_code == 400
    assert "Test delivery" not in resp.text
    assert receiver.requests == []


async def test_the_attempt_table_says_which_event_each_attempt_carried(
    console: AsyncTestClient[Any], store: Stores
) -> None:
    doc = make_doc("alpha", "demo-project", "r-started", 1_000, events=(*EVENT_STATUSES, "started"))
    rk = run_key(doc.project_name, doc.run_id)
    await store.subscriptions.register(doc, rk, "whsec_dGVzdA==")
    await store.watches.record_result(run_digest(rk), "started", b'{"status":"started"}', 0, 1)
    await store.watches.fan_out_notices(run_digest(rk))
    [notice] = await store.deliveries.claim_notices(1)
    logged = Attempt(
        attempt=1, at=2_000, status_code=500, error=None, duration_ms=3.0, event_type="run.started"
    )
    await store.deliveries.record_attempt(notice, logged, DeliveryOutcome.RETRY, 1_000)
    page = await console.get(f"/console/subscriptions/{doc.id}")
    assert page.status_code == 200
    assert '<th scope="col">Event</th>' in page.text and "<td>run.started</td>" in page.text
