"""The store's atomic transitions, on the suite's real Redis."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from relay.model import (
    Attempt,
    FailureCode,
    SubscriptionDoc,
    SubState,
    WatchFailure,
    new_subscription_id,
    run_key,
)
from relay.store import Store, decode_cursor, encode_cursor

WS = "ws-1"
TTL = 3600.0


def make_doc(
    client: str = "alpha",
    run_id: str = "run1",
    url: str = "http://127.0.0.1:9/ok",
    events: tuple[str, ...] = ("completed", "failed", "canceled"),
    created_at: int = 1_000,
) -> SubscriptionDoc:
    return SubscriptionDoc(
        id=new_subscription_id(),
        client=client,
        workspace_id=WS,
        project_name="proj one",
        run_id=run_id,
        callback_url=url,
        events=events,
        metadata=msgspec.Raw(b'{"k":1}'),
        created_at=created_at,
    )


@pytest.fixture
def store(redis_client: Redis) -> Store:
    return Store(redis_client, result_ttl=TTL)


def rk_of(doc: SubscriptionDoc) -> str:
    return run_key(doc.workspace_id, doc.project_name, doc.run_id)


async def test_first_registration_starts_polling_and_second_joins(store: Store) -> None:
    a, b = make_doc(url="http://a.example/x"), make_doc(url="http://b.example/x")
    ra = await store.register(a, rk_of(a))
    rb = await store.register(b, rk_of(b))
    assert (ra.created, ra.action) == (True, "poll")
    assert (rb.created, rb.action) == (True, "join")
    claimed = await store.claim_polls(now=2_000, limit=10, lease_ms=5_000)
    assert [c.run_key for c in claimed] == [rk_of(a)]
    assert claimed[0].project_name == "proj one"
    # Leased: not claimable again until the lease runs out.
    assert await store.claim_polls(now=2_001, limit=10, lease_ms=5_000) == []
    assert len(await store.claim_polls(now=7_001, limit=10, lease_ms=5_000)) == 1


async def test_same_registration_is_idempotent(store: Store) -> None:
    doc = make_doc()
    first = await store.register(doc, rk_of(doc))
    again = await store.register(msgspec.structs.replace(doc, id=new_subscription_id()), rk_of(doc))
    assert again.created is False
    assert again.subscription_id == first.subscription_id
    assert again.action == "existing"


async def test_terminal_result_fans_out_and_skips_unwanted_events(store: Store) -> None:
    wants = make_doc(url="http://a.example/1")
    skips = make_doc(url="http://a.example/2", events=("failed",))
    await store.register(wants, rk_of(wants))
    await store.register(skips, rk_of(skips))
    rk = rk_of(wants)
    [_claim] = await store.claim_polls(2_000, 10, 5_000)
    outcome, delivering = await store.record_result(
        rk, 2_100, "completed", b'{"runId":"run1","status":"completed"}', 0, 0
    )
    assert outcome == "terminal"
    assert delivering == [wants.id]
    sub = await store.get_subscription(skips.id, "alpha")
    assert sub is not None and sub.state is SubState.SKIPPED
    watch = await store.get_watch(rk)
    assert watch is not None and watch.state == "terminal" and watch.polls == 1
    # A terminal run is never polled again, whatever a late poll answer says.
    assert await store.claim_polls(10_000, 10, 5_000) == []
    outcome, _ = await store.record_result(rk, 2_200, "started", b"{}", 9_000, 3)
    assert outcome == "stale"


async def test_late_registration_on_cached_terminal_run_goes_straight_to_delivery(
    store: Store,
) -> None:
    first = make_doc(url="http://a.example/1")
    await store.register(first, rk_of(first))
    await store.claim_polls(2_000, 10, 5_000)
    await store.record_result(rk_of(first), 2_100, "failed", b"{}", 0, 0)
    late = make_doc(url="http://a.example/late")
    reg = await store.register(late, rk_of(late))
    assert reg.action == "deliver"
    claims = await store.claim_deliveries(now=10**13, limit=10, lease_ms=1_000)
    assert {c.subscription_id for c in claims} == {first.id, late.id}
    assert {c.event_type for c in claims} == {"run.failed"}


async def test_delivery_attempts_retry_then_deliver(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    await store.claim_polls(2_000, 10, 5_000)
    await store.record_result(rk_of(doc), 2_100, "completed", b"{}", 0, 0)
    [claim] = await store.claim_deliveries(3_000, 10, 60_000)
    failed = Attempt(attempt=1, at=3_000, status_code=500, error="http_500", duration_ms=3.0)
    assert await store.record_attempt(claim, failed, "retry", 4_000, 3_001) == "delivering"
    assert await store.claim_deliveries(3_999, 10, 60_000) == []
    [claim2] = await store.claim_deliveries(4_000, 10, 60_000)
    assert claim2.attempts_in_series == 1
    ok = Attempt(attempt=2, at=4_000, status_code=200, error=None, duration_ms=2.0)
    assert await store.record_attempt(claim2, ok, "delivered", 0, 4_001) == "delivered"
    sub = await store.get_subscription(doc.id, "alpha")
    assert sub is not None
    assert sub.state is SubState.DELIVERED
    assert [a.status_code for a in sub.attempts] == [500, 200]
    assert sub.next_attempt_at is None


async def test_redeliver_starts_a_new_series_and_old_results_are_stale(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    assert await store.redeliver(doc.id, "alpha", 1) == "conflict:watching"
    await store.claim_polls(2_000, 10, 5_000)
    await store.record_result(rk_of(doc), 2_100, "completed", b"{}", 0, 0)
    [claim] = await store.claim_deliveries(3_000, 10, 60_000)
    gone = Attempt(attempt=1, at=3_000, status_code=410, error="http_410", duration_ms=1.0)
    assert await store.record_attempt(claim, gone, "gone", 0, 3_001) == "gone"
    assert await store.redeliver(doc.id, "beta", 4_000) == "not_found"
    assert await store.redeliver(doc.id, "alpha", 4_000) == "ok"
    [fresh] = await store.claim_deliveries(4_000, 10, 60_000)
    assert (fresh.series, fresh.attempts_in_series) == (2, 0)
    # An attempt of the old series that finishes late changes nothing.
    assert await store.record_attempt(claim, gone, "gone", 0, 4_001) == "stale"


async def test_cancel_of_last_subscription_stops_polling(store: Store) -> None:
    a, b = make_doc(url="http://a.example/1"), make_doc(url="http://a.example/2")
    await store.register(a, rk_of(a))
    await store.register(b, rk_of(b))
    assert await store.cancel(a.id, "beta", 5) is False
    assert await store.cancel(a.id, "alpha", 5) is True
    assert (await store.get_watch(rk_of(a))).state == "watching"  # type: ignore[union-attr]
    assert await store.cancel(b.id, "alpha", 6) is True
    assert (await store.get_watch(rk_of(a))).state == "idle"  # type: ignore[union-attr]
    assert await store.claim_polls(10**13, 10, 1_000) == []
    # A new subscription on the idle run restarts polling.
    c = make_doc(url="http://a.example/3")
    assert (await store.register(c, rk_of(c))).action == "poll"


async def test_watch_failure_moves_subscriptions_to_watch_failed(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    outcome, delivering = await store.record_watch_failure(
        rk_of(doc), 9_000, WatchFailure(FailureCode.RUN_NOT_FOUND, "404"), polled=True
    )
    assert outcome == "failed" and delivering == [doc.id]
    [claim] = await store.claim_deliveries(10_000, 10, 1_000)
    assert claim.event_type == "run.watch_failed"
    failure = await store.watch_failure(rk_of(doc))
    assert failure is not None and failure.code is FailureCode.RUN_NOT_FOUND


async def test_list_is_newest_first_with_stable_cursor_and_per_client(store: Store) -> None:
    docs = [make_doc(run_id=f"r{i}", created_at=1_000 + i // 2) for i in range(7)]
    for d in docs:
        await store.register(d, rk_of(d))
    await store.register(make_doc(client="beta"), "x")
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_subscriptions("alpha", state=None, limit=3, cursor=cursor)
        seen += [s.doc.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 7 == len(set(seen))
    created = [next(d.created_at for d in docs if d.id == sid) for sid in seen]
    assert created == sorted(created, reverse=True)
    watching = await store.list_subscriptions(
        "alpha", state=SubState.WATCHING, limit=50, cursor=None
    )
    assert len(watching.items) == 7
    by_run = await store.list_subscriptions("alpha", state=None, limit=50, cursor=None, run_id="r3")
    assert [s.doc.run_id for s in by_run.items] == ["r3"]


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(123, "sub_x")) == (123, "sub_x")
    with pytest.raises(ValueError, match="malformed"):
        decode_cursor("!!!")


async def test_secrets_created_once_and_rotation_keeps_old_for_24h(store: Store) -> None:
    first = await store.signing_secret("alpha", "whsec_a")
    assert first == await store.signing_secret("alpha", "whsec_b") == "whsec_a"
    await store.rotate_secret("alpha", "whsec_c", now=1_000)
    assert await store.signing_secrets("alpha", 2_000) == ["whsec_c", "whsec_a"]
    assert await store.signing_secrets("alpha", 1_000 + 24 * 3600 * 1000) == ["whsec_c"]
    assert await store.signing_secrets("beta", 2_000) == []


async def test_sweep_restores_lost_due_entries(store: Store, redis_client: Redis) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    await redis_client.delete("r:due:poll")
    assert await store.sweep(5_000) == (1, 0)
    assert len(await store.claim_polls(5_000, 10, 1_000)) == 1


async def test_expired_subscriptions_leave_no_index_entries(
    redis_client: Redis,
) -> None:
    store = Store(redis_client, result_ttl=0.2)  # finished subscriptions expire after 200 ms
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    assert await store.cancel(doc.id, "alpha", 5) is True
    await asyncio.sleep(0.35)
    assert not await redis_client.exists(f"r:s:{doc.id}")
    assert await store.prune_expired(10**13) == 1
    keys = sorted(k.decode() for k in await redis_client.keys("*"))
    assert [k for k in keys if k.startswith("r:c:")] == []
    assert "r:exp" not in keys
    # The idle watch of the canceled run expired as well: nothing of the run is left.
    assert [k for k in keys if k.startswith(("r:w:", "r:res:"))] == []


async def test_redelivery_keeps_a_finished_subscription_alive(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    await store.claim_polls(2_000, 10, 5_000)
    await store.record_result(rk_of(doc), 2_100, "completed", b"{}", 0, 0)
    [claim] = await store.claim_deliveries(3_000, 10, 60_000)
    ok = Attempt(attempt=1, at=3_000, status_code=200, error=None, duration_ms=1.0)
    await store.record_attempt(claim, ok, "delivered", 0, 3_001)
    assert await store.redis.zcard("r:exp") == 1
    assert await store.redeliver(doc.id, "alpha", 4_000) == "ok"
    assert await store.redis.zcard("r:exp") == 0
    assert await store.redis.ttl(f"r:s:{doc.id}") == -1


async def test_a_delivery_claim_carries_what_the_attempt_reads(store: Store) -> None:
    """One round trip per attempt: result (or stored body), secrets and failure ride along."""
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    await store.claim_polls(2_000, 10, 5_000)
    envelope = b'{"runId":"run1","status":"completed","result":[1]}'
    await store.record_result(rk_of(doc), 2_100, "completed", envelope, 0, 0)
    await store.signing_secret("alpha", "whsec_a")
    await store.rotate_secret("alpha", "whsec_b", 2_500)
    [claim] = await store.claim_deliveries(3_000, 10, 1_000)
    assert (claim.body, claim.result, claim.result_known) == (None, envelope, True)
    assert claim.secrets == ("whsec_b", "whsec_a")
    assert claim.failure is None
    assert await store.store_event_body(doc.id, b'{"type":"run.completed"}') == (
        b'{"type":"run.completed"}'
    )
    # First writer wins: a second worker that built the body too sends the stored bytes.
    assert await store.store_event_body(doc.id, b"other") == b'{"type":"run.completed"}'
    [again] = await store.claim_deliveries(5_000, 10, 1_000)
    assert (again.body, again.result) == (b'{"type":"run.completed"}', None)


async def test_a_delivery_claim_leaves_a_big_result_to_a_separate_read(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    await store.claim_polls(2_000, 10, 5_000)
    big = b'{"runId":"run1","status":"completed","result":"' + b"x" * 70_000 + b'"}'
    await store.record_result(rk_of(doc), 2_100, "completed", big, 0, 0)
    [claim] = await store.claim_deliveries(3_000, 10, 1_000)
    assert (claim.result, claim.result_known, claim.secrets) == (None, False, ())
    cached = await store.cached_result(rk_of(doc))
    assert cached is not None and cached.body == big


async def test_a_watch_failed_claim_carries_the_failure(store: Store) -> None:
    doc = make_doc()
    await store.register(doc, rk_of(doc))
    failure = WatchFailure(FailureCode.WATCH_TIMEOUT, "run not terminal")
    await store.record_watch_failure(rk_of(doc), 9_000, failure, polled=False)
    [claim] = await store.claim_deliveries(10_000, 10, 1_000)
    assert (claim.event_type, claim.failure, claim.result_known) == (
        "run.watch_failed",
        failure,
        True,
    )


async def test_sweep_restores_delivering_entries_across_scan_pages(
    store: Store, redis_client: Redis
) -> None:
    docs = [make_doc(run_id=f"run{i}") for i in range(600)]
    for doc in docs:
        await store.register(doc, rk_of(doc))
    await store.claim_polls(2_000, 1_000, 5_000)
    for doc in docs[:3]:
        await store.record_result(rk_of(doc), 2_100, "completed", b"{}", 0, 0)
    await redis_client.delete("r:due:poll", "r:due:dlv")
    assert await store.sweep(5_000) == (597, 3)
    assert await store.sweep(5_000) == (0, 0)
