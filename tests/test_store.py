"""The store's atomic transitions, on the suite's real Redis."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from relay.model import (
    EVENT_STATUSES,
    DeliveryOutcome,
    FailureCode,
    RegisterAction,
    SubscriptionDoc,
    SubState,
    WatchFailure,
    new_subscription_id,
    run_key,
)
from relay.store import Stores, decode_cursor, encode_cursor, keys
from relay.store.deliveries import DeliveryStore
from relay.store.watches import WatchStore
from tests.support import store_helpers as sh
from tests.support.api_helpers import make_doc as support_doc

WS = "ws-1"


def make_doc(
    client: str = "alpha",
    run_id: str = "run1",
    url: str = "http://127.0.0.1:9/ok",
    events: tuple[str, ...] = EVENT_STATUSES,
    created_at: int = 1_000,
) -> SubscriptionDoc:
    """A document of workspace WS, project "proj one", with metadata {"k":1}."""
    return support_doc(
        client,
        "proj one",
        run_id,
        created_at,
        workspace_id=WS,
        callback_url=url,
        events=events,
        metadata=b'{"k":1}',
    )


async def test_first_registration_starts_polling_and_second_joins(
    redis_client: Redis, store: Stores
) -> None:
    watches = WatchStore(redis_client, ttl_ms=3_600_000, lease_ms=150)
    a, b = make_doc(url="http://a.example/x"), make_doc(url="http://b.example/x")
    assert await sh.register(store, a) == RegisterAction.POLL
    assert await sh.register(store, b) == RegisterAction.JOIN
    claimed = await watches.claim_polls(10)
    assert [(c.rd, c.project, c.kind) for c in claimed] == [(sh.rd_of(a), "proj one", "poll")]
    # Leased (by Redis's clock): not claimable again until the lease runs out.
    assert await watches.claim_polls(10) == []
    await asyncio.sleep(0.2)
    assert len(await watches.claim_polls(10)) == 1


async def test_same_registration_is_idempotent(store: Stores) -> None:
    doc = make_doc()
    rk = run_key(doc.project_name, doc.run_id)
    first = await store.subscriptions.register(doc, rk, sh.SECRET)
    again = await store.subscriptions.register(
        msgspec.structs.replace(doc, id=new_subscription_id()), rk, sh.SECRET
    )
    assert (again.created, again.id, again.action) == (False, first.id, RegisterAction.EXISTING)


async def test_terminal_result_fans_out_and_skips_unwanted_events(store: Stores) -> None:
    wants = make_doc(url="http://a.example/1")
    skips = make_doc(url="http://a.example/2", events=("failed",))
    await sh.register(store, wants)
    await sh.register(store, skips)
    [_claim] = await store.watches.claim_polls(10)
    assert await sh.terminal(store, wants, "completed") == 1
    sub = await store.subscriptions.get_subscription(skips.id, "alpha")
    assert sub is not None and sub.state is SubState.SKIPPED
    watch = await store.watches.get_watch(sh.rd_of(wants))
    assert watch is not None and watch.state == "terminal" and watch.status == "completed"
    assert watch.pending == 1
    # A terminal run is never polled again, whatever a late poll answer says.
    assert await store.watches.claim_polls(10) == []
    late = await store.watches.record_result(sh.rd_of(wants), "started", b"{}", 9_000, 3)
    assert late.outcome == "stale"


async def test_late_registration_on_cached_terminal_run_goes_straight_to_delivery(
    store: Stores,
) -> None:
    first = make_doc(url="http://a.example/1")
    await sh.register(store, first)
    await sh.terminal(store, first, "failed")
    late = make_doc(url="http://a.example/late")
    assert await sh.register(store, late) == RegisterAction.DELIVER
    claims = await store.deliveries.claim_deliveries(10)
    assert {c.subscription_id for c in claims} == {first.id, late.id}
    assert {c.event_type for c in claims} == {"run.failed"}
    assert len({c.occurred_at for c in claims}) == 1  # the run's end, for late joiners too


async def test_delivery_attempts_retry_then_deliver(store: Stores) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    await sh.terminal(store, doc, "completed")
    [claim] = await store.deliveries.claim_deliveries(10)
    failed = sh.attempt(1, 500)
    rec = await store.deliveries.record_attempt(claim, failed, DeliveryOutcome.RETRY, 150)
    assert rec.state == "delivering" and rec.next is not None
    assert await store.deliveries.claim_deliveries(10) == []
    await asyncio.sleep(0.2)
    [claim2] = await store.deliveries.claim_deliveries(10)
    assert claim2.attempts_in_series == 1
    rec = await store.deliveries.record_attempt(
        claim2, sh.attempt(2, 200), DeliveryOutcome.DELIVERED, 0
    )
    assert rec.state == "delivered"
    sub = await store.subscriptions.get_subscription(doc.id, "alpha")
    assert sub is not None and sub.state is SubState.DELIVERED
    assert [a.status_code for a in sub.attempts] == [500, 200]
    assert sub.next_attempt_at is None
    # The run's keys now expire (no delivery pending), not before the subscription's.
    watch = await store.watches.get_watch(sh.rd_of(doc))
    assert watch is not None and watch.pending == 0
    assert await store.watches.redis.pttl(keys.watch(sh.rd_of(doc))) > 0


async def test_redeliver_starts_a_new_series_and_old_results_are_stale(store: Stores) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    conflict = await store.subscriptions.redeliver(doc.id, "alpha")
    assert (conflict.outcome, conflict.state) == ("conflict", "watching")
    await sh.terminal(store, doc, "completed")
    [claim] = await store.deliveries.claim_deliveries(10)
    gone = sh.attempt(1, 410)
    assert (await store.deliveries.record_attempt(claim, gone, DeliveryOutcome.GONE, 0)).state == (
        "gone"
    )
    assert (await store.subscriptions.redeliver(doc.id, "beta")).outcome == "not_found"
    assert (await store.subscriptions.redeliver(doc.id, "alpha")).outcome == "ok"
    [fresh] = await store.deliveries.claim_deliveries(10)
    assert (fresh.series, fresh.attempts_in_series) == (2, 0)
    # An attempt of the old series that finishes late changes nothing.
    stale = await store.deliveries.record_attempt(claim, gone, DeliveryOutcome.GONE, 0)
    assert stale.stale and stale.state is None


async def test_cancel_of_last_subscription_stops_polling(store: Stores) -> None:
    a, b = make_doc(url="http://a.example/1"), make_doc(url="http://a.example/2")
    await sh.register(store, a)
    await sh.register(store, b)
    assert await store.subscriptions.cancel(a.id, "beta") is False
    assert await store.subscriptions.cancel(a.id, "alpha") is True
    assert (await store.watches.get_watch(sh.rd_of(a))).state == "watching"  # type: ignore[union-attr]
    assert await store.subscriptions.cancel(b.id, "alpha") is True
    assert (await store.watches.get_watch(sh.rd_of(a))).state == "idle"  # type: ignore[union-attr]
    assert await store.watches.claim_polls(10) == []
    # A new subscription on the idle run restarts polling.
    assert await sh.register(store, make_doc(url="http://a.example/3")) == RegisterAction.POLL


async def test_watch_failure_moves_subscriptions_to_watch_failed(store: Stores) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    failure = WatchFailure(FailureCode.RUN_NOT_FOUND, "404")
    rec = await store.watches.record_watch_failure(sh.rd_of(doc), failure)
    assert rec.outcome == "failed"
    assert await store.watches.fan_out_all(sh.rd_of(doc)) == 1
    [claim] = await store.deliveries.claim_deliveries(10)
    assert (claim.event_type, claim.failure) == ("run.watch_failed", failure)


async def test_list_is_newest_first_with_stable_cursor_and_per_client(store: Stores) -> None:
    docs = [make_doc(run_id=f"r{i}", created_at=1_000 + i // 2) for i in range(7)]
    await sh.register_all(store, *docs)
    await sh.register(store, make_doc(client="beta"))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.subscriptions.list_subscriptions(
            "alpha", state=None, limit=3, cursor=cursor
        )
        seen += [s.doc.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 7 == len(set(seen))
    created = [next(d.created_at for d in docs if d.id == sid) for sid in seen]
    assert created == sorted(created, reverse=True)
    watching = await store.subscriptions.list_subscriptions(
        "alpha", state=SubState.WATCHING, limit=50, cursor=None
    )
    assert len(watching.items) == 7
    by_run = await store.subscriptions.list_subscriptions(
        "alpha", state=None, limit=50, cursor=None, run_id="r3"
    )
    assert [s.doc.run_id for s in by_run.items] == ["r3"]


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(123, "sub_x")) == (123, "sub_x")
    with pytest.raises(ValueError, match="malformed"):
        decode_cursor("!!!")


async def test_secrets_created_once_and_rotation_keeps_old_for_24h(store: Stores) -> None:
    first = await store.secrets.signing_secret("alpha", "whsec_a")
    assert first == await store.secrets.signing_secret("alpha", "whsec_b") == "whsec_a"
    await store.secrets.rotate_secret("alpha", "whsec_c")
    doc = make_doc()
    await sh.register(store, doc)  # the registration keeps the existing secret
    await sh.terminal(store, doc, "completed")
    [claim] = await store.deliveries.claim_deliveries(10)
    assert claim.secrets == ("whsec_c", "whsec_a")
    assert await store.secrets.current("beta") is None


async def test_sweep_restores_lost_due_entries(store: Stores, redis_client: Redis) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    await redis_client.delete(keys.DUE_POLL)
    s = await store.housekeeping.sweep_slice()
    assert (s.polls, s.deliveries, s.watching_done) == (1, 0, True)
    assert len(await store.watches.claim_polls(10)) == 1


async def test_expired_subscriptions_leave_no_index_entries(redis_client: Redis) -> None:
    store = sh.open_stores(redis_client, result_ttl=0.2)  # finished ones expire after 200 ms
    doc = make_doc()
    await sh.register(store, doc)
    assert await store.subscriptions.cancel(doc.id, "alpha") is True
    await asyncio.sleep(0.35)
    assert not await redis_client.exists(keys.sub(doc.id))
    assert (await store.housekeeping.prune_slice()).pruned == 1
    left = sorted(k.decode() for k in await redis_client.keys("*"))
    # What stays: the client's signing secret and the registry of client names.
    assert left == sorted([keys.secrets("alpha"), keys.CLIENTS])


async def test_redelivery_keeps_a_finished_subscription_alive(store: Stores) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    await sh.terminal(store, doc, "completed")
    [claim] = await store.deliveries.claim_deliveries(10)
    await store.deliveries.record_attempt(claim, sh.attempt(1, 200), DeliveryOutcome.DELIVERED, 0)
    redis = store.subscriptions.redis
    assert await redis.zcard(keys.EXPIRING) == 1
    assert (await store.subscriptions.redeliver(doc.id, "alpha")).outcome == "ok"
    assert await redis.zcard(keys.EXPIRING) == 0
    assert await redis.ttl(keys.sub(doc.id)) == -1
    assert await redis.ttl(keys.watch(sh.rd_of(doc))) == -1  # pending again: the result stays


async def test_a_delivery_claim_carries_what_the_attempt_reads(store: Stores) -> None:
    """One round trip per attempt: result, secrets and failure ride along."""
    doc = make_doc()
    await sh.register(store, doc)
    envelope = b'{"runId":"run1","status":"completed","result":[1]}'
    await sh.terminal(store, doc, "completed", envelope)
    [claim] = await store.deliveries.claim_deliveries(10)
    assert (claim.result, claim.result_known) == (envelope, True)
    assert claim.secrets == (sh.SECRET,)
    assert claim.failure is None and claim.doc.metadata == msgspec.Raw(b'{"k":1}')


async def test_a_delivery_claim_leaves_a_big_result_to_a_separate_read(
    redis_client: Redis, store: Stores
) -> None:
    deliveries = DeliveryStore(redis_client, ttl_ms=3_600_000, workspace_id=WS)
    doc = make_doc()
    await sh.register(store, doc)
    big = b'{"runId":"run1","status":"completed","result":"' + b"x" * 70_000 + b'"}'
    await sh.terminal(store, doc, "completed", big)
    [claim] = await deliveries.claim_deliveries(10)
    assert (claim.result, claim.result_known) == (None, False)
    cached = await deliveries.result(claim.run_digest)
    assert cached is not None and cached.body == big


async def test_a_watch_failed_claim_carries_the_failure(store: Stores) -> None:
    doc = make_doc()
    await sh.register(store, doc)
    failure = WatchFailure(FailureCode.WATCH_TIMEOUT, "run not terminal")
    await store.watches.record_watch_failure(sh.rd_of(doc), failure)
    await store.watches.fan_out_all(sh.rd_of(doc))
    [claim] = await store.deliveries.claim_deliveries(10)
    assert (claim.event_type, claim.failure, claim.result_known) == (
        "run.watch_failed",
        failure,
        True,
    )


async def test_sweep_restores_delivering_entries_from_a_saved_cursor(
    store: Stores, redis_client: Redis
) -> None:
    docs = [make_doc(run_id=f"run{i}") for i in range(600)]
    await sh.register_all(store, *docs)
    for doc in docs[:3]:
        await sh.terminal(store, doc, "completed")
    await redis_client.delete(keys.DUE_POLL, keys.DUE_DELIVERY)
    slices = [await store.housekeeping.sweep_slice(watching=200, delivering=2) for _ in range(3)]
    # Bounded slices (200 watching + 2 delivering each), the cursors saved in Redis between.
    assert all(s.seen <= 202 for s in slices) and slices[2].watching_done
    assert sum(s.polls for s in slices) == 597
    assert sum(s.deliveries for s in slices) == 3
    again = await store.housekeeping.run()
    assert again == (0, 0, 0)
