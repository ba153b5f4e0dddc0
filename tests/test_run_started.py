"""The opt-in ``run.started`` event (contract §6), on the store's real Redis: made due once per
subscription that asked for it when a poll first sees the run ``started`` (or at once for one
joining a run already seen started), on a lane of its own that never holds up the terminal
event; canceled subscriptions drop it; the fan-out is bounded and resumes after a crash."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from relay.model import (
    EVENT_STATUSES,
    SUBSCRIBABLE_STATUSES,
    Attempt,
    DeliveryOutcome,
    EventType,
    Lane,
    SubscriptionDoc,
    SubState,
    run_key,
)
from relay.store import Stores, keys
from relay.store.keys import SubField
from tests.support import store_helpers as sh
from tests.support.api_helpers import make_doc
from workers.polling import next_interval

WS = "ws-started"
STARTED_TOO = (*EVENT_STATUSES, "started")


def doc(run_id: str, events: tuple[str, ...] = STARTED_TOO, n: int = 0) -> SubscriptionDoc:
    return make_doc(
        "alpha",
        "p",
        run_id,
        1_000 + n,
        workspace_id=WS,
        callback_url=f"http://127.0.0.1:9/ok/{n}",
        events=events,
    )


async def poll(store: Stores, d: SubscriptionDoc, status: str) -> bool:
    """Record a fetched status as the poll pump would; True when run.started fan-out is due
    (then run it to the end, as the worker does)."""
    rec = await store.watches.record_result(
        sh.rd_of(d), status, b'{"status":"%s"}' % status.encode(), 0, 1
    )
    if rec.notices:
        while not (await store.watches.fan_out_notices(sh.rd_of(d))).done:
            pass
    return rec.notices


async def test_the_started_event_is_due_once_for_each_subscription_that_asked(
    store: Stores,
) -> None:
    wants, plain = doc("r1", n=1), doc("r1", EVENT_STATUSES, n=2)
    await sh.register_all(store, wants, plain)
    assert await poll(store, wants, "pending") is False
    assert await store.deliveries.claim_notices(10) == []
    assert await poll(store, wants, "started") is True
    assert await poll(store, wants, "started") is False  # seen started already: once
    [claim] = await store.deliveries.claim_notices(10)
    assert (claim.subscription_id, claim.lane, claim.event_type) == (
        wants.id,
        Lane.STARTED,
        EventType.STARTED,
    )
    assert claim.doc.events == tuple(SUBSCRIBABLE_STATUSES) and claim.secrets == (sh.SECRET,)
    assert claim.result is None and claim.result_known
    assert await store.deliveries.claim_deliveries(10) == []  # the terminal lane is empty
    logged = Attempt(
        attempt=1, at=1, status_code=200, error=None, duration_ms=1.0, event_type=claim.event_type
    )
    rec = await store.deliveries.record_attempt(claim, logged, DeliveryOutcome.DELIVERED, 0)
    assert rec.state == SubState.DELIVERED
    sub = await store.subscriptions.get_subscription(wants.id, "alpha")
    assert sub is not None and sub.state == SubState.WATCHING  # its own state is the run's
    assert sub.attempts == (logged,) and sub.attempts_in_series == 0
    assert await store.deliveries.claim_notices(10) == []


async def test_a_subscription_joining_a_run_seen_started_gets_its_event_at_once(
    store: Stores,
) -> None:
    first, late, plain = doc("r2", n=1), doc("r2", n=2), doc("r2", EVENT_STATUSES, n=3)
    await sh.register(store, first)
    await poll(store, first, "started")
    await sh.register_all(store, late, plain)
    claims = await store.deliveries.claim_notices(10)
    assert sorted(c.subscription_id for c in claims) == sorted([first.id, late.id])
    assert len({c.occurred_at for c in claims}) == 1  # the time the run was first seen started


async def test_the_started_lane_never_holds_up_the_terminal_event(store: Stores) -> None:
    d = doc("r3")
    await sh.register(store, d)
    await poll(store, d, "started")
    [notice] = await store.deliveries.claim_notices(10)  # leased, its attempt still in flight
    await poll(store, d, "completed")
    assert await store.watches.fan_out_all(sh.rd_of(d)) == 1
    [terminal] = await store.deliveries.claim_deliveries(10)
    assert (terminal.lane, terminal.event_type) == (Lane.TERMINAL, EventType.COMPLETED)
    done = await store.deliveries.record_attempt(
        terminal, sh.attempt(), DeliveryOutcome.DELIVERED, 0
    )
    assert done.state == SubState.DELIVERED
    # The run.started attempt ends later, on its own lane, and changes nothing of the other.
    late = await store.deliveries.record_attempt(notice, sh.attempt(), DeliveryOutcome.EXHAUSTED, 0)
    assert late.state == SubState.EXHAUSTED
    sub = await store.subscriptions.get_subscription(d.id, "alpha")
    assert sub is not None and sub.state == SubState.DELIVERED


async def test_a_retried_started_event_comes_back_on_its_own_due_set(
    store: Stores, redis_client: Redis
) -> None:
    d = doc("r4")
    await sh.register(store, d)
    await poll(store, d, "started")
    [claim] = await store.deliveries.claim_notices(10)
    rec = await store.deliveries.record_attempt(claim, sh.attempt(), DeliveryOutcome.RETRY, 0)
    assert rec.state == SubState.DELIVERING and rec.next is not None
    assert await redis_client.zscore(keys.DUE_DELIVERY, d.id) is None
    [again] = await store.deliveries.claim_notices(10)
    assert again.attempts_in_series == 1
    stored = await redis_client.hmget(keys.sub(d.id), [SubField.ATTEMPTS, SubField.NOTICE_ATTEMPTS])
    assert stored == [None, b"1"]  # the terminal lane's count is untouched


async def test_a_canceled_subscription_drops_its_started_event(store: Stores) -> None:
    d = doc("r5")
    await sh.register_all(store, d, doc("r5", EVENT_STATUSES, n=9))  # the run stays watched
    await poll(store, d, "started")
    await store.subscriptions.cancel(d.id, "alpha")
    assert await store.deliveries.claim_notices(10) == []


async def test_a_run_first_seen_terminal_sends_no_started_event(store: Stores) -> None:
    d = doc("r6")
    await sh.register(store, d)
    assert await poll(store, d, "completed") is False
    await store.watches.fan_out_all(sh.rd_of(d))
    assert await store.deliveries.claim_notices(10) == []
    assert [c.event_type for c in await store.deliveries.claim_deliveries(10)] == [
        EventType.COMPLETED
    ]


async def test_started_only_subscription_is_skipped_at_the_end_but_keeps_its_event(
    store: Stores,
) -> None:
    d = doc("r7", ("started",))
    await sh.register(store, d)
    await poll(store, d, "started")
    await poll(store, d, "completed")
    await store.watches.fan_out_all(sh.rd_of(d))
    sub = await store.subscriptions.get_subscription(d.id, "alpha")
    assert sub is not None and sub.state == SubState.SKIPPED
    assert sub.event_type is None  # it delivers no terminal event (contract §6: eventType)
    assert [c.subscription_id for c in await store.deliveries.claim_notices(10)] == [d.id]


async def test_the_fan_out_is_bounded_and_resumes_after_a_crash(
    store: Stores, redis_client: Redis
) -> None:
    docs = [doc("r8", n=i) for i in range(5)]
    await sh.register_all(store, *docs)
    rd = sh.rd_of(docs[0])
    rec = await store.watches.record_result(rd, "started", b'{"status":"started"}', 0, 1)
    assert rec.notices
    step = await store.watches.fan_out_notices(rd, batch=2)
    assert (step.due, step.done) == (2, False)
    # The worker dies here; the next poll (still started) answers notices=1 again.
    rec = await store.watches.record_result(rd, "started", b'{"status":"started"}', 0, 1)
    assert rec.notices
    steps = [await store.watches.fan_out_notices(rd, batch=2) for _ in range(2)]
    assert [(s.due, s.done) for s in steps] == [(2, False), (1, True)]
    assert await redis_client.zcard(keys.DUE_NOTICE) == 5
    rec = await store.watches.record_result(rd, "started", b'{"status":"started"}', 0, 1)
    assert not rec.notices


async def test_the_index_of_started_subscribers_goes_with_the_run(
    store: Stores, redis_client: Redis
) -> None:
    store = sh.open_stores(redis_client, result_ttl=1.0)
    d = doc("r9")
    await sh.register(store, d)
    assert await redis_client.zcard(keys.starters(sh.rd_of(d))) == 1
    await store.subscriptions.cancel(d.id, "alpha")  # the run's last subscriber: idle
    assert await redis_client.zcard(keys.starters(sh.rd_of(d))) == 0
    plain = doc("r10", EVENT_STATUSES)
    await sh.register(store, plain)
    assert not await redis_client.exists(keys.starters(sh.rd_of(plain)))


def test_attempts_of_the_started_lane_say_so_in_the_log() -> None:
    logged = msgspec.json.encode(
        Attempt(
            attempt=1, at=1, status_code=200, error=None, duration_ms=1.0, event_type="run.started"
        )
    )
    plain = msgspec.json.encode(sh.attempt())
    assert b'"event_type":"run.started"' in logged and b"event_type" not in plain


async def test_a_pushed_run_with_started_subscribers_is_polled_normally_until_seen_started(
    store: Stores,
) -> None:
    """Intuned's push tells only the end: such a run is not left on the slow fallback curve
    while a run.started subscriber waits."""
    s = sh.store_settings()
    wants, plain = doc("r11"), doc("r12", EVENT_STATUSES)
    for d in (wants, plain):
        await store.starts.expect_push(run_key("p", d.run_id), 3_600_000, "tok-" + d.run_id, "h")
    await sh.register_all(store, wants, plain)
    claims = {c.rd: c for c in await store.watches.claim_polls(10)}
    first, other = claims[sh.rd_of(wants)], claims[sh.rd_of(plain)]
    assert first.px and first.sw and other.px and not other.sw
    assert next_interval(first, s)[1] == s.poll_max_interval
    assert next_interval(other, s)[1] == s.push_fallback_max_interval
    await poll(store, wants, "started")
    await store.watches.release_polls([sh.rd_of(wants)])
    [again] = await store.watches.claim_polls(10)
    assert again.px and not again.sw
    assert next_interval(again, s)[1] == s.push_fallback_max_interval


async def test_a_deferred_started_event_moves_on_its_own_lane_only(
    redis_client: Redis, store: Stores
) -> None:
    """A host's cap defers run.started attempts too: the notice comes back at the deferred
    time (not after its lease), and the terminal lane's next attempt is not touched."""
    d = doc("r13")
    await sh.register(store, d)
    await poll(store, d, "started")
    [claim] = await store.deliveries.claim_notices(10)
    later = 10**13
    assert await store.deliveries.defer_deliveries([d.id], later, Lane.STARTED) == 1
    assert await redis_client.zscore(keys.DUE_NOTICE, d.id) == later
    assert await redis_client.hget(keys.sub(d.id), SubField.NEXT_ATTEMPT) is None
    assert await redis_client.zscore(keys.DUE_DELIVERY, d.id) is None
    sub = await store.subscriptions.get_subscription(d.id, "alpha")
    assert sub is not None and sub.attempts == () and claim.attempts_in_series == 0
