"""Store v2 on real Redis: one copy of each result, byte-identical bodies, quotas, failure codes
that survive a restarted watch, exact pagination with ties, deferral and per-minute counters."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import redis
from redis.asyncio import Redis

from relay.model import (
    Attempt,
    DeliveryOutcome,
    FailureCode,
    RegisterAction,
    SubscriptionDoc,
    WatchFailure,
    run_key,
)
from relay.store import ClaimedDelivery, Stores, keys, run_digest
from relay.store.scripts import script_source
from tests.support import store_helpers as sh
from tests.support.api_helpers import (
    PUBLIC_URL,
    WORKSPACE,
    api_client,
    api_env,
    body,
    make_doc,
    stored_keys,
)
from tests.support.relay_fixtures import AUTH_ALPHA, AUTH_BETA
from workers.delivery import body_for

WS = "ws-v2"


def doc(
    client: str = "alpha", run_id: str = "run1", url: str = "http://127.0.0.1:9/a", **more: Any
) -> SubscriptionDoc:
    """A document of workspace WS, project "proj", created at 1000 (fields by keyword)."""
    return make_doc(
        client,
        "proj",
        run_id,
        1_000,
        workspace_id=WS,
        callback_url=url,
        metadata=b'{"m":1}',
        **more,
    )


async def used_memory(r: Redis) -> int:
    return int((await r.info("memory"))["used_memory"])


async def body_of(store: Stores, claim: ClaimedDelivery) -> bytes:
    raw = claim.result
    if not claim.result_known:
        cached = await store.deliveries.result(claim.run_digest)
        raw = cached.body if cached else None
    return body_for(claim, raw)


async def test_fifty_subscriptions_share_one_stored_megabyte_result(
    redis_client: Redis, store: Stores
) -> None:
    before = await used_memory(redis_client)
    docs = [doc(url=f"http://127.0.0.1:9/hook/{i}") for i in range(50)]
    await sh.register_all(store, *docs)
    result = b'{"runId":"run1","status":"completed","result":"' + b"r" * 1_000_000 + b'"}'
    assert await sh.terminal(store, docs[0], "completed", result) == 50
    claims = await store.deliveries.claim_deliveries(50)
    bodies = [await body_of(store, c) for c in claims]
    assert len(claims) == 50 and all(b'"r' in b and len(b) > 1_000_000 for b in bodies)
    grown = await used_memory(redis_client) - before
    assert grown < 3_000_000, grown


async def test_the_body_is_the_same_bytes_on_retry_redelivery_and_restart(
    redis_client: Redis, redis_url: str, store: Stores
) -> None:
    d = doc()
    await sh.register(store, d)
    envelope = b'{"runId":"run1","status":"completed","result":{"x":[1,2.50,"\\u00e9"]},"new":1}'
    await sh.terminal(store, d, "completed", envelope)
    [first] = await store.deliveries.claim_deliveries(10)
    sent = [await body_of(store, first)]
    failed = Attempt(attempt=1, at=1, status_code=500, error="http_500", duration_ms=1.0)
    await store.deliveries.record_attempt(first, failed, DeliveryOutcome.RETRY, 0)
    [retry] = await store.deliveries.claim_deliveries(10)  # the retry
    sent.append(await body_of(store, retry))
    ok = Attempt(attempt=2, at=2, status_code=200, error=None, duration_ms=1.0)
    await store.deliveries.record_attempt(retry, ok, DeliveryOutcome.DELIVERED, 0)
    assert (await store.subscriptions.redeliver(d.id, "alpha")).outcome == "ok"
    [again] = await store.deliveries.claim_deliveries(10)  # the redelivery
    sent.append(await body_of(store, again))
    # A restarted worker: a new connection and new store objects read the same bytes.
    fresh = Redis.from_url(redis_url)
    try:
        restarted = sh.open_stores(fresh)
        await restarted.deliveries.release_deliveries([d.id])
        [after] = await restarted.deliveries.claim_deliveries(10)
        sent.append(await body_of(restarted, after))
    finally:
        await fresh.aclose()
    assert len(set(sent)) == 1, sent
    assert b'"result":{"x":[1,2.50,"\\u00e9"]}' in sent[0] and b'"new":1' in sent[0]
    assert not await redis_client.keys(keys.sub(d.id) + ":b")  # no body stored per subscription


async def test_a_restarted_watch_keeps_the_earlier_failure_on_its_subscriptions(
    store: Stores,
) -> None:
    early = doc(url="http://127.0.0.1:9/early")
    await sh.register(store, early)
    failure = WatchFailure(FailureCode.RUN_NOT_FOUND, "Intuned answered 404")
    await store.watches.record_watch_failure(sh.rd_of(early), failure)
    await store.watches.fan_out_all(sh.rd_of(early))
    # A new registration restarts the failed watch...
    assert await sh.register(store, doc(url="http://127.0.0.1:9/late")) == RegisterAction.POLL
    watch = await store.watches.get_watch(sh.rd_of(early))
    assert watch is not None and watch.state == "watching" and watch.failure is None
    # ... and the subscription the failure reached still carries its code.
    [claim] = await store.deliveries.claim_deliveries(10)
    assert claim.subscription_id == early.id and claim.failure == failure
    assert b'"code":"run_not_found"' in await body_of(store, claim)


async def test_the_run_result_outlives_every_pending_delivery(redis_client: Redis) -> None:
    store = sh.open_stores(redis_client, result_ttl=1.0)
    a, b = doc(url="http://127.0.0.1:9/a"), doc(url="http://127.0.0.1:9/b")
    await sh.register(store, a)
    await sh.register(store, b)
    await sh.terminal(store, a, "completed", b'{"status":"completed"}')
    assert await redis_client.pttl(keys.watch(sh.rd_of(a))) == -1  # two deliveries pending
    claims = await store.deliveries.claim_deliveries(10)
    ok = sh.attempt()
    await store.deliveries.record_attempt(claims[0], ok, DeliveryOutcome.DELIVERED, 0)
    assert await redis_client.pttl(keys.watch(sh.rd_of(a))) == -1  # one still pending
    await store.deliveries.record_attempt(claims[1], ok, DeliveryOutcome.DELIVERED, 0)
    assert 0 < await redis_client.pttl(keys.watch(sh.rd_of(a))) <= 1000  # now it may expire
    # Both set by the last attempt's script (the same expiry); read in one transaction
    # (Redis's clock stands still in it), so a busy box cannot move the two reads apart.
    async with redis_client.pipeline(transaction=True) as pipe:
        pipe.pttl(keys.sub(a.id))
        pipe.pttl(keys.watch(sh.rd_of(a)))
        sub_ttl, watch_ttl = await pipe.execute()
    assert sub_ttl <= watch_ttl


async def test_defer_moves_due_deliveries_without_counting_an_attempt(
    redis_client: Redis, store: Stores
) -> None:
    d = doc()
    await sh.register(store, d)
    await sh.terminal(store, d, "failed", b'{"status":"failed"}')
    [claim] = await store.deliveries.claim_deliveries(10)
    later = 10**13
    assert await store.deliveries.defer_deliveries([d.id, "sub_unknown"], later) == 1
    assert await redis_client.zscore(keys.DUE_DELIVERY, d.id) == later
    sub = await store.subscriptions.get_subscription(d.id, "alpha")
    assert sub is not None and sub.attempts_in_series == 0 and sub.next_attempt_at == later
    assert claim.attempts_in_series == 0


async def test_deferrals_made_meanwhile_go_in_one_call(redis_client: Redis, store: Stores) -> None:
    """A worker defers a black hole's claimed backlog one delivery at a time: those made while
    a call is in flight share the next one, and each learns whether its own delivery moved."""
    docs = [doc(url=f"http://127.0.0.1:9/{i}") for i in range(6)]
    await sh.register_all(store, *docs)
    for d in docs:
        await sh.terminal(store, d, "completed")
    claims = await store.deliveries.claim_deliveries(10)
    assert len(claims) == 6
    await redis_client.zrem(keys.DUE_DELIVERY, docs[5].id)  # no longer leased: stays put
    later = 10**13
    calls = await evalsha_calls(redis_client)
    moved = await asyncio.gather(
        *(store.deliveries.defer_deliveries([d.id], later + i) for i, d in enumerate(docs))
    )
    assert moved == [1, 1, 1, 1, 1, 0]
    assert await evalsha_calls(redis_client) - calls <= 2  # one call (two if its writer ran first)
    for i, d in enumerate(docs[:5]):
        assert await redis_client.zscore(keys.DUE_DELIVERY, d.id) == later + i
    assert await redis_client.zscore(keys.DUE_DELIVERY, docs[5].id) is None


async def evalsha_calls(redis_client: Redis) -> int:
    """How many EVALSHA calls this Redis has answered (its command statistics)."""
    stats = await redis_client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_registrations_of_one_loop_pass_share_one_round_trip(
    redis_sync: redis.Redis, store: Stores
) -> None:
    """Registrations made in one event-loop pass go to Redis in one pipeline on one
    connection, each script atomic on its own and each caller answered its own registration."""
    docs = [doc(run_id=f"batch{i}") for i in range(12)]
    twins = [doc(run_id="twin") for _ in range(4)]  # one client, run and callback: one is new
    before = connections_received(redis_sync)
    regs = await asyncio.gather(
        *(
            store.subscriptions.register(d, run_key(d.project_name, d.run_id), sh.SECRET)
            for d in docs + twins
        )
    )
    assert connections_received(redis_sync) - before <= 1  # one connection, not one each
    assert [r.id for r in regs[:12]] == [d.id for d in docs]
    assert all(r.action is RegisterAction.POLL for r in regs[:12])
    assert sum(r.created for r in regs[12:]) == 1 and len({r.id for r in regs[12:]}) == 1
    for d in docs:
        sub = await store.subscriptions.get_subscription(d.id, "alpha")
        assert sub is not None and sub.doc.run_id == d.run_id


def connections_received(redis_sync: redis.Redis) -> int:
    """How many connections this Redis has accepted so far."""
    return int(redis_sync.info("stats")["total_connections_received"])


async def test_attempts_are_counted_per_client_and_minute(
    redis_client: Redis, store: Stores
) -> None:
    docs = [doc(url=f"http://127.0.0.1:9/{i}") for i in range(3)]
    await sh.register_all(store, *docs)
    await sh.terminal(store, docs[0], "completed")
    claims = await store.deliveries.claim_deliveries(10)
    outcomes = [DeliveryOutcome.DELIVERED, DeliveryOutcome.RETRY, DeliveryOutcome.GONE]
    for claim, outcome in zip(claims, outcomes, strict=True):
        a = sh.attempt()
        await store.deliveries.record_attempt(claim, a, outcome, 60_000)
    rows = await store.deliveries.delivery_counters("alpha", minutes=60)
    assert len(rows) == 60 and rows == sorted(rows)
    assert sum(r[1] for r in rows) == 1 and sum(r[2] for r in rows) == 2
    assert rows[-1][1:] in ((1, 2), (0, 0))  # this minute (or the previous, across a boundary)
    counter_keys = await redis_client.keys(keys.counters("alpha", 0).rsplit(":", 1)[0] + ":*")
    ttls = [await redis_client.pttl(k) for k in counter_keys]
    assert ttls and all(0 < t <= 2.1 * 3600_000 for t in ttls)
    assert await store.deliveries.delivery_counters("beta", minutes=2) == [
        (rows[-2][0], 0, 0),
        (rows[-1][0], 0, 0),
    ]


async def test_quotas_answer_429_naming_the_limit_and_write_nothing(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    env = api_env(
        redis_url,
        RELAY_MAX_SUBSCRIPTIONS_PER_RUN="2",
        RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT="3",
    )
    async with api_client(env) as api:
        shared = []
        for i in range(2):
            resp = await api.post(
                "/v1/subscriptions",
                json=body(run="shared", url=f"{PUBLIC_URL}/{i}"),
                headers=AUTH_ALPHA,
            )
            assert resp.status_code == 201, resp.text
            shared.append(resp.json()["id"])
        before = {k: redis_sync.dump(k) for k in stored_keys(redis_sync)}
        third = await api.post(
            "/v1/subscriptions", json=body(run="shared", url=f"{PUBLIC_URL}/x"), headers=AUTH_BETA
        )
        assert third.status_code == 429, third.text
        assert "RELAY_MAX_SUBSCRIPTIONS_PER_RUN" in third.json()["detail"]
        assert {k: redis_sync.dump(k) for k in stored_keys(redis_sync)} == before
        ok = await api.post("/v1/subscriptions", json=body(run="other"), headers=AUTH_ALPHA)
        assert ok.status_code == 201
        before = {k: redis_sync.dump(k) for k in stored_keys(redis_sync)}
        over = await api.post("/v1/subscriptions", json=body(run="fourth"), headers=AUTH_ALPHA)
        assert (
            over.status_code == 429
            and "RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT" in over.json()["detail"]
        )
        assert {k: redis_sync.dump(k) for k in stored_keys(redis_sync)} == before
        # Canceling one frees a slot: the quota counts active subscriptions only.
        assert (
            await api.delete(f"/v1/subscriptions/{ok.json()['id']}", headers=AUTH_ALPHA)
        ).status_code == 204
        again = await api.post("/v1/subscriptions", json=body(run="fourth"), headers=AUTH_ALPHA)
        assert again.status_code == 201, again.text
        # A deleted subscription leaves its run's count too (the first one, kept in the watch,
        # as well as a later one): the other client's third on "shared" now fits, then no more.
        for sid in shared:
            gone = await api.delete(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)
            assert gone.status_code == 204
        for i in range(3):
            late = await api.post(
                "/v1/subscriptions",
                json=body(run="shared", url=f"{PUBLIC_URL}/b{i}"),
                headers=AUTH_BETA,
            )
            assert late.status_code == (201 if i < 2 else 429), late.text


async def test_pagination_is_exact_with_250_ties(redis_url: str, store: Stores) -> None:
    ids = set()
    for i in range(250):
        d = doc(run_id=f"tie-{i}", created_at=1_234)
        await sh.register(store, d)
        ids.add(d.id)
    async with api_client(api_env(redis_url)) as api:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = (await api.get("/v1/subscriptions" + query, headers=AUTH_ALPHA)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
    assert len(seen) == 250 and set(seen) == ids


async def test_a_watch_restarted_mid_fan_out_counts_the_subscribers_not_yet_reached(
    store: Stores,
) -> None:
    docs = [doc(url=f"http://127.0.0.1:9/{i}") for i in range(5)]
    await sh.register_all(store, *docs)
    failure = WatchFailure(FailureCode.WATCH_TIMEOUT, "run not terminal")
    await store.watches.record_watch_failure(sh.rd_of(docs[0]), failure)
    step = await store.watches.fan_out(sh.rd_of(docs[0]), batch=2)  # a crash after one batch
    assert (step.delivering, step.done) == (2, False)
    new = doc(url="http://127.0.0.1:9/new", created_at=2_000)
    assert await sh.register(store, new) == RegisterAction.POLL
    # Three old subscribers still watching and the new one: canceling the new one keeps polling.
    new_id = new.id
    assert await store.subscriptions.cancel(new_id, "alpha")
    watch = await store.watches.get_watch(sh.rd_of(docs[0]))
    assert watch is not None and watch.state == "watching"


async def test_the_first_subscription_per_run_lives_in_the_watch_and_client_hashes(
    redis_client: Redis,
) -> None:
    """One subscriber: no run subscriber zset, no per-run index key; later ones get them, and
    idempotency, ``?runId=``, fan-out and pruning see both kinds alike."""
    store = sh.open_stores(redis_client, result_ttl=0.3)
    a, b = doc(url="http://127.0.0.1:9/a"), doc(url="http://127.0.0.1:9/b")
    other_project = doc(url="http://127.0.0.1:9/a", project_name="proj2")
    assert await sh.register(store, a) == RegisterAction.POLL
    crd = keys.run_id_digest("run1")
    assert not await redis_client.exists(
        keys.subscribers(sh.rd_of(a)), keys.client_run("alpha", crd)
    )
    for d in (b, other_project):
        assert await sh.register(store, d) in (RegisterAction.JOIN, RegisterAction.POLL)
    for d, same in zip([doc(url=a.callback_url), doc(url=b.callback_url)], (a, b), strict=True):
        reg = await store.subscriptions.register(d, run_key("proj", "run1"), sh.SECRET)
        assert (reg.action, reg.id) == (RegisterAction.EXISTING, same.id)
    page = await store.subscriptions.list_subscriptions(
        "alpha", state=None, limit=10, cursor=None, run_id="run1"
    )
    assert {s.doc.id for s in page.items} == {a.id, b.id, other_project.id}
    # A canceled first subscription is replaced by the same registration made again.
    assert await store.subscriptions.cancel(a.id, "alpha")
    a2 = doc(url=a.callback_url)
    assert await sh.register(store, a2) == RegisterAction.JOIN
    assert await redis_client.hget(keys.client_runs("alpha"), crd) == a2.id.encode()
    # Fan-out from the cursor: b (2), then a2 (3); a (sequence 1) left the run when canceled.
    assert not await redis_client.hexists(keys.watch(sh.rd_of(a)), keys.WatchField.FIRST_SUB)
    await store.watches.record_result(sh.rd_of(a), "completed", b"{}", 0, 0.0)
    steps = [await store.watches.fan_out(sh.rd_of(a), batch=n) for n in (1, 1, 5)]
    assert [(s.moved, s.done) for s in steps] == [(1, False), (1, False), (0, True)]
    claims = await store.deliveries.claim_deliveries(10)
    assert {c.subscription_id for c in claims} == {b.id, a2.id}
    for c in claims:
        ok = sh.attempt()
        await store.deliveries.record_attempt(c, ok, DeliveryOutcome.DELIVERED, 0)
    await asyncio.sleep(0.4)
    assert (await store.housekeeping.prune_slice()).pruned == 3  # a, b and a2 expired
    left = await store.subscriptions.list_subscriptions(
        "alpha", state=None, limit=10, cursor=None, run_id="run1"
    )
    assert [s.doc.id for s in left.items] == [other_project.id]
    assert await redis_client.hget(keys.client_runs("alpha"), crd) is None
    assert await redis_client.hlen(keys.client_run("alpha", crd)) == 1  # other_project's


async def test_the_lua_names_runs_as_python_does(redis_client: Redis) -> None:
    """keys.run_digest / run_id_digest (11 URL-safe base64 characters) and the prelude's."""
    source = script_source("cancel").split("local sid, cl, ttl")[0]  # constants + prelude
    lua = source + "return {run_digest(ARGV[1]), run_id_digest(ARGV[1])}"
    for rk in ("ws/p/r", run_key("proj one", "run/ü?"), "", "a" * 300):
        expected = [run_digest(rk), keys.run_id_digest(unquote(rk.rsplit("/", 1)[-1]))]
        assert [v.decode() for v in await redis_client.eval(lua, 0, rk)] == expected
        assert len(expected[0]) == 11


async def test_runs_are_stored_without_the_workspace_and_read_back_with_it(
    redis_client: Redis, store: Stores
) -> None:
    d = doc(run_id="run/ü")
    await sh.register(store, d)
    sub_hash = await redis_client.hgetall(keys.sub(d.id))
    watch = await redis_client.hgetall(keys.watch(sh.rd_of(d)))
    assert sub_hash[b"rk"] == watch[b"rk"] == b"proj/run%2F%C3%BC"
    stored = [*sub_hash.values(), *watch.values()]
    assert not [v for v in stored if WORKSPACE.encode() in v or WS.encode() in v]
    read = await store.subscriptions.get_subscription(d.id, "alpha")
    assert read is not None
    assert (read.doc.workspace_id, read.doc.project_name, read.doc.run_id) == (
        WORKSPACE,
        "proj",
        "run/ü",
    )
    [claim] = await store.watches.claim_polls(10)
    assert (claim.project, claim.run_id, claim.iv) == ("proj", "run/ü", 0.0)


async def test_the_poll_interval_is_stored_short_and_read_back_exact(
    redis_client: Redis, store: Stores
) -> None:
    d = doc()
    await sh.register(store, d)
    rd, iv = sh.rd_of(d), keys.WatchField.INTERVAL.value
    assert await redis_client.hget(keys.watch(rd), iv) is None  # not polled yet: 0
    for interval, stored in ((3.0, b"3"), (10.125, b"10.125"), (15.1875, b"15.188")):
        [claim] = await store.watches.claim_polls(10)
        await store.watches.record_result(rd, "pending", b"{}", 0, interval)
        assert await redis_client.hget(keys.watch(rd), iv) == stored
    [claim] = await store.watches.claim_polls(10)
    assert claim.iv == 15.188
