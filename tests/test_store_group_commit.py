"""Attempts and pending polls recorded by group commit: one script call for those that finish
together, each one's own result or error, and the lease as the safety net when a call fails."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from relay.model import (
    EVENT_STATUSES,
    Attempt,
    DeliveryOutcome,
    FailureCode,
    Lane,
    SubscriptionDoc,
    SubState,
    WatchFailure,
)
from relay.store import ClaimedDelivery, Stores, keys
from relay.store.deliveries import RECORD_BATCH_MAX, DeliveryStore, due_set
from relay.store.scripts import GroupCommit, RecordError, script_source
from relay.store.types import AttemptRecorded
from tests.support.api_helpers import make_doc
from tests.support.slowlog import WORK_BOUND, script_work
from tests.support.store_helpers import attempt, open_stores, rd_of, register, terminal


async def due_claims(store: Stores, n: int, client: str = "alpha") -> list[ClaimedDelivery]:
    """``n`` subscriptions of ended runs (one each), claimed."""
    docs: list[SubscriptionDoc] = []
    for i in range(n):
        doc = make_doc(client, "proj", f"gc-{i}", 1_000, callback_url=f"http://h.example/{i}")
        await register(store, doc)
        await terminal(store, doc, "completed")
        docs.append(doc)
    claims = await store.deliveries.claim_deliveries(n)
    assert len(claims) == n
    return claims


async def test_attempts_finished_together_are_one_script_call(
    store: Stores, redis_url: str
) -> None:
    first, *claims = await due_claims(store, 21)
    ok = attempt(1, 200)
    await store.deliveries.record_attempt(first, ok, DeliveryOutcome.DELIVERED, 0)  # loads it
    with script_work(redis_url) as work:
        recs = await asyncio.gather(
            *(store.deliveries.record_attempt(c, ok, DeliveryOutcome.DELIVERED, 0) for c in claims)
        )
    assert [r.state for r in recs] == ["delivered"] * 20
    assert work.calls == 1  # all twenty were submitted before the first write went out
    for c in claims:
        sub = await store.subscriptions.get_subscription(c.subscription_id, "alpha")
        assert sub is not None and sub.state is SubState.DELIVERED
        assert [a.status_code for a in sub.attempts] == [200]
    # The client's minute counted every attempt (one counter write for the whole call).
    [(_, delivered, failed)] = await store.deliveries.delivery_counters("alpha", 1)
    assert (delivered, failed) == (21, 0)


async def test_a_full_group_stays_within_the_bounded_work_of_one_call(
    store: Stores, redis_url: str
) -> None:
    first, *claims = await due_claims(store, RECORD_BATCH_MAX + 7)
    ok = attempt(1, 200)
    await store.deliveries.record_attempt(first, ok, DeliveryOutcome.DELIVERED, 0)  # loads it
    with script_work(redis_url) as work:
        await asyncio.gather(
            *(store.deliveries.record_attempt(c, ok, DeliveryOutcome.DELIVERED, 0) for c in claims)
        )
    assert work.calls == 2  # the cap, then the rest
    assert 0 < work.most < WORK_BOUND


async def test_one_attempt_redis_refuses_fails_alone(store: Stores, redis_client: Redis) -> None:
    claims = await due_claims(store, 3)
    bad = claims[1].subscription_id
    await redis_client.set(keys.attempts(bad), "not a list")  # RPUSH answers WRONGTYPE
    ok = attempt(1, 200)
    results = await asyncio.gather(
        *(store.deliveries.record_attempt(c, ok, DeliveryOutcome.DELIVERED, 0) for c in claims),
        return_exceptions=True,
    )
    assert isinstance(results[1], RecordError) and "WRONGTYPE" in str(results[1])
    assert [getattr(r, "state", None) for r in (results[0], results[2])] == ["delivered"] * 2
    # The refused one is still leased in the due set: it comes back when the lease runs out.
    assert await redis_client.zscore(keys.DUE_DELIVERY, bad) is not None


async def test_a_failed_record_call_leaves_every_attempt_of_it_leased(
    redis_client: Redis,
) -> None:
    short = DeliveryStore(redis_client, ttl_ms=3_600_000, workspace_id="ws", lease_ms=300)
    store = dataclasses.replace(open_stores(redis_client), deliveries=short)
    claims = await due_claims(store, 5)
    # The same store over a Redis that is not there: the group's one call fails.
    gone = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    broken = DeliveryStore(gone, ttl_ms=3_600_000, workspace_id="ws", lease_ms=300)
    ok = attempt(1, 200)
    try:
        results = await asyncio.gather(
            *(broken.record_attempt(c, ok, DeliveryOutcome.DELIVERED, 0) for c in claims),
            return_exceptions=True,
        )
    finally:
        await gone.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert await short.claim_deliveries(10) == []  # still leased, nothing recorded
    await asyncio.sleep(0.4)
    again = await short.claim_deliveries(10)
    assert {c.subscription_id for c in again} == {c.subscription_id for c in claims}
    assert all(c.attempts_in_series == 0 for c in again)


async def test_group_commit_writes_what_arrived_during_the_previous_write_together() -> None:
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int | Exception]:
        writes.append(items)
        if len(writes) == 1:
            await release.wait()
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(write, cap=3)
    first = asyncio.ensure_future(group.submit(1))
    await asyncio.sleep(0)  # the writer starts and holds its first write
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(group.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await f for f in later] == [20, 30, 40, 50, 60]
    assert writes == [[1], [2, 3, 4], [5, 6]]


async def test_group_commit_failure_reaches_only_its_own_write() -> None:
    calls = 0

    async def write(items: list[str]) -> list[str | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("down")
        return [s.upper() for s in items]

    group: GroupCommit[str, str] = GroupCommit(write, cap=2)
    failed = [asyncio.ensure_future(group.submit(s)) for s in ("a", "b")]
    after = [asyncio.ensure_future(group.submit(s)) for s in ("c",)]
    for f in failed:
        with pytest.raises(OSError, match="down"):
            await f
    assert [await f for f in after] == ["C"]


async def test_the_expiry_member_a_record_writes_is_the_one_the_prelude_builds(
    store: Stores, redis_client: Redis
) -> None:
    """The record gets the run's digests from the claim; housekeeping reads them back."""
    doc = make_doc("alpha", "proj one", "run/ü? x", 1_000, callback_url="http://h.example/1")
    await register(store, doc)
    await terminal(store, doc, "completed")
    [claim] = await store.deliveries.claim_deliveries(1)
    await store.deliveries.record_attempt(claim, attempt(1, 410), DeliveryOutcome.GONE, 0)
    [member] = await redis_client.zrange(keys.EXPIRING, 0, -1)
    source = script_source("cancel").split("local sid, cl, ttl")[0]  # constants + prelude
    lua = source + "return exp_member(ARGV[1], KEYS[1])"
    assert await redis_client.eval(lua, 1, keys.sub(doc.id), doc.id) == member


async def watched_runs(store: Stores, n: int) -> list[str]:
    """``n`` watched runs (one subscription each); their run digests."""
    docs = [make_doc("alpha", "proj", f"gp-{i}", 1_000) for i in range(n)]
    for doc in docs:
        await register(store, doc)
    return [rd_of(doc) for doc in docs]


async def test_pending_polls_finished_together_are_one_script_call(
    store: Stores, redis_url: str, redis_client: Redis
) -> None:
    first, *rds = await watched_runs(store, 21)
    watches = store.watches
    await watches.record_result(first, "pending", b"{}", 60_000, 3.0)  # loads the script
    with script_work(redis_url) as work:
        recs = await asyncio.gather(
            *(watches.record_result(rd, "pending", b"{}", 60_000, 3.0) for rd in rds)
        )
    assert [r.outcome for r in recs] == ["scheduled"] * 20
    assert work.calls == 1
    for rd in rds:  # each run's next poll is a minute from Redis's now
        assert await redis_client.zscore(keys.DUE_POLL, rd) is not None


async def test_a_run_end_is_recorded_alone_and_one_refused_poll_fails_alone(
    store: Stores, redis_client: Redis
) -> None:
    ending, pending, broken = await watched_runs(store, 3)
    await redis_client.delete(keys.watch(broken))
    await redis_client.set(keys.watch(broken), "not a hash")  # HMGET answers WRONGTYPE
    watches = store.watches
    results = await asyncio.gather(
        watches.record_result(ending, "completed", b"{}", 0, 3.0),
        watches.record_result(pending, "pending", b"{}", 60_000, 3.0),
        watches.record_result(broken, "pending", b"{}", 60_000, 3.0),
        return_exceptions=True,
    )
    assert [getattr(r, "outcome", None) for r in results[:2]] == ["terminal", "scheduled"]
    assert isinstance(results[2], RecordError) and "WRONGTYPE" in str(results[2])


async def test_group_commit_of_depth_two_sends_a_second_write_while_one_is_in_flight() -> None:
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int | Exception]:
        writes.append(items)
        if len(writes) <= 2:
            await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(write, cap=8, depth=2)
    first = asyncio.ensure_future(group.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(group.submit(2))  # a writer of its own: one is in flight
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(group.submit(i)) for i in (3, 4)]  # both busy: they wait
    await asyncio.sleep(0)
    assert writes == [[1], [2]]
    release.set()
    assert [await f for f in (first, second, *later)] == [1, 2, 3, 4]
    assert sorted(writes[2]) == [3, 4] and len(writes) == 3


async def test_every_value_of_a_group_of_polls_is_stored_as_given(
    store: Stores, redis_url: str, redis_client: Redis
) -> None:
    """One call records results and errors together: each body byte for byte (not UTF-8, NUL,
    bytes msgpack would read as a header), each interval, each error's not-found flag."""
    first, body_run, new_status, not_found, failed_call = await watched_runs(store, 5)
    watches = store.watches
    await watches.record_result(first, "pending", b"{}", 60_000, 3.0)  # loads the script
    body = b'\x00\xff\xc4\x01"\\ \xe2\x82 {"status": "pending"}'
    with script_work(redis_url) as work:
        recs = await asyncio.gather(
            watches.record_result(body_run, "pending", body, 60_000, 2.125),
            watches.record_result(new_status, "some-new-status", b"", 30_000, 0.001),
            watches.record_poll_error(not_found, 45_000, 7.5, not_found=True),
            watches.record_poll_error(failed_call, 45_000, 12.0, not_found=False),
        )
    assert [r.outcome for r in recs] == ["scheduled"] * 4
    assert work.calls == 1
    W, RF = keys.WatchField, keys.ResultField
    fields = (RF.BODY, W.STATUS, W.INTERVAL, W.ERRORS, W.NOT_FOUND_SINCE)

    async def stored(rd: str) -> list[bytes | None]:
        return await redis_client.hmget(keys.watch(rd), [str(f) for f in fields])

    assert await stored(body_run) == [body, b"pending", b"2.125", None, None]
    assert await stored(new_status) == [b"", b"some-new-status", b"0.001", None, None]
    *values, since = await stored(not_found)
    assert values == [None, None, b"7.5", b"1"] and since is not None
    assert await stored(failed_call) == [None, None, b"12", b"1", None]
    for rd in (body_run, new_status, not_found, failed_call):
        assert await redis_client.zscore(keys.DUE_POLL, rd) is not None


async def test_a_watch_failure_keeps_its_message_as_given(
    store: Stores, redis_client: Redis
) -> None:
    [rd] = await watched_runs(store, 1)
    message = 'Intuned answered 404: "ü" \\ \x01 \U0001f600'
    failure = WatchFailure(FailureCode.RUN_NOT_FOUND, message)
    assert (await store.watches.record_watch_failure(rd, failure)).outcome == "failed"
    code, stored = await redis_client.hmget(
        keys.watch(rd), [keys.WatchField.FAIL_CODE, keys.WatchField.FAIL_MESSAGE]
    )
    assert (code, stored) == (b"run_not_found", message.encode())


ODD = 'he said "no" \\ \x00\x01\x1f\x7f \u2028 é \U0001f600 \ufffd {"a": [1]} </x>'


async def awkward_claims(store: Stores) -> tuple[list[ClaimedDelivery], list[ClaimedDelivery]]:
    """Four claims on the terminal lane and two on the run.started lane, each of its own run,
    with awkward subscription and run ids."""
    docs = [
        make_doc(
            "alpha",
            'proj "ü"/%2F',
            f'run {i} "\\ \U0001f600/ü%',
            1_000 + i,
            id=f'sub_{i}"\\ ü\U0001f600 %s',
            events=(*EVENT_STATUSES, "started"),
        )
        for i in range(6)
    ]
    for d in docs:
        await register(store, d)
    for d in docs[4:]:
        assert (await store.watches.record_result(rd_of(d), "started", b"{}", 0, 1.0)).notices
        while not (await store.watches.fan_out_notices(rd_of(d))).done:
            pass
    for d in docs[:4]:
        await terminal(store, d, "completed")
    terminal_claims = await store.deliveries.claim_deliveries(10)
    started_claims = await store.deliveries.claim_notices(10)
    order = {d.id: i for i, d in enumerate(docs)}
    return (
        sorted(terminal_claims, key=lambda c: order[c.subscription_id]),
        sorted(started_claims, key=lambda c: order[c.subscription_id]),
    )


def odd_attempt(n: int, claim: ClaimedDelivery) -> Attempt:
    """An attempt whose every field differs from the others' and whose text is awkward."""
    return Attempt(
        attempt=n,
        at=1_700_000_000_123 + n,
        status_code=None if n == 3 else 200 + n,
        error=None if n % 2 else f"error {n}: {ODD}",
        duration_ms=n + 0.25,
        response=f"{n} {ODD}",
        series=claim.series,
        event_type=claim.event_type if claim.lane is Lane.STARTED else None,
    )


async def test_every_value_of_a_group_of_attempts_is_stored_as_given(
    store: Stores, redis_url: str, redis_client: Redis
) -> None:
    """One call records each outcome on the terminal lane and a retry and an ending on the
    run.started lane: each attempt's JSON byte for byte, each state, retry time, count, run."""
    (delivered, gone, exhausted, retry), (started_retry, started_end) = await awkward_claims(store)
    D = DeliveryOutcome
    plan = [
        (delivered, D.DELIVERED, 0),
        (gone, D.GONE, 0),
        (exhausted, D.EXHAUSTED, 0),
        (retry, D.RETRY, 12_345),
        (started_retry, D.RETRY, 54_321),
        (started_end, D.EXHAUSTED, 0),
    ]
    attempts = [odd_attempt(n, c) for n, (c, _, _) in enumerate(plan, 1)]
    old_series = msgspec.structs.replace(delivered, series=delivered.series + 1)
    await redis_client.script_load(script_source("record_attempts"))
    with script_work(redis_url) as work:
        recs = await asyncio.gather(
            store.deliveries.record_attempt(old_series, attempt(9), D.DELIVERED, 0),
            *(
                store.deliveries.record_attempt(c, a, outcome, delay)
                for (c, outcome, delay), a in zip(plan, attempts, strict=True)
            ),
        )
    assert work.calls == 1
    stale, *recs = recs
    assert stale.stale and stale.state is None  # a series the subscription is not in
    assert [r.state for r in recs] == [
        "delivered", "gone", "exhausted", "delivering", "delivering", "exhausted"
    ]  # fmt: skip
    now = delivered.now
    for (c, _, delay), r in zip(plan, recs, strict=True):
        assert (r.next is None) == (delay == 0)
        if r.next is not None:
            assert now + delay <= r.next < now + delay + 60_000
            assert await redis_client.zscore(due_set(c.lane), c.subscription_id) == r.next
    await assert_logged(redis_client, [c for c, _, _ in plan], attempts, stale_log=attempt(9))
    await assert_moved_on(redis_client, [c for c, _, _ in plan], recs)
    minutes = await store.deliveries.delivery_counters("alpha", 2)  # one, if a minute ended
    assert (sum(m[1] for m in minutes), sum(m[2] for m in minutes)) == (2, 5)


async def assert_logged(
    redis_client: Redis, claims: list[ClaimedDelivery], attempts: list[Attempt], stale_log: Attempt
) -> None:
    """Each subscription's attempt log holds its attempt's JSON exactly (the stale one's first)."""
    for i, (c, a) in enumerate(zip(claims, attempts, strict=True)):
        logged = await redis_client.lrange(keys.attempts(c.subscription_id), 0, -1)
        before = [msgspec.json.encode(stale_log)] if i == 0 else []
        assert logged == [*before, msgspec.json.encode(a)]
        assert msgspec.json.decode(logged[-1], type=Attempt) == a


async def assert_moved_on(
    redis_client: Redis, claims: list[ClaimedDelivery], recs: list[AttemptRecorded]
) -> None:
    """Each subscription's lane moved as its outcome says; an ended terminal lane named its run."""
    F = keys.SubField
    fields = [F.STATE, F.ATTEMPTS, F.NEXT_ATTEMPT, F.NOTICE_STATE, F.NOTICE_ATTEMPTS]
    rows = [await redis_client.hmget(keys.sub(c.subscription_id), fields) for c in claims]
    assert [[v.decode() if v else v for v in row[:2] + row[3:]] for row in rows] == [
        ["delivered", "1", None, None],
        ["gone", "1", None, None],
        ["exhausted", "1", None, None],
        ["delivering", "1", None, None],
        ["watching", None, "delivering", "1"],
        ["watching", None, "exhausted", "1"],
    ]
    assert rows[3][2] == str(recs[3].next).encode()
    assert [row[2] for i, row in enumerate(rows) if i != 3] == [None] * 5
    expiring = {m.split(b"\t")[0]: m for m in await redis_client.zrange(keys.EXPIRING, 0, -1)}
    for c in claims[:3]:  # ended: the r:exp member names its run, the run has nothing pending
        sid, _, _, rd, rid = expiring[c.subscription_id.encode()].decode().split("\t")
        assert (sid, rd, rid) == (c.subscription_id, c.run_digest, keys.run_id_digest(c.doc.run_id))
        watch = keys.watch(c.run_digest)
        assert await redis_client.hget(watch, keys.WatchField.PENDING) == b"0"
        assert await redis_client.pttl(watch) > 0
