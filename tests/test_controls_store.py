"""The store's side of the controls, on the suite's real Redis: bulk redeliver in bounded
batches, quotas with a TTL, incidents, the operational webhook, run ownership, fingerprints."""

from __future__ import annotations

from typing import Any

import pytest
from arq.constants import job_key_prefix
from arq.worker import Retry
from redis.asyncio import Redis

from relay.metrics import WorkerMetrics
from relay.model import (
    Attempt,
    DeliveryOutcome,
    RegisterAction,
    SubscriptionDoc,
    SubState,
    run_key,
)
from relay.services.redelivery import query_for, redeliver_matching
from relay.settings import Settings
from relay.store import OperationalHook, RedeliverQuery, Stores, keys
from relay.store.keys import SubField
from tests.support.api_helpers import make_doc
from tests.support.relay_fixtures import base_env
from tests.support.store_helpers import SECRET, finish_run, open_stores
from workers.operational import confirm_operational, subscription_ending
from workers.runner import open_deps

WS = "ws-1"


def doc(client: str, run_id: str, url: str, created_at: int) -> SubscriptionDoc:
    return make_doc(
        client, "proj", run_id, created_at, workspace_id=WS, callback_url=url, events=("completed",)
    )


async def gone(stores: Stores, docs: list[SubscriptionDoc]) -> None:
    """Register each, end their runs, and let every first attempt answer 410."""
    await gone_or_delivered(stores, docs, record=True)


async def gone_or_delivered(stores: Stores, docs: list[SubscriptionDoc], *, record: bool) -> None:
    """Register each and end their runs; with ``record``, every first attempt answers 410."""
    for d in docs:
        rk = run_key(d.project_name, d.run_id)
        await stores.subscriptions.register(d, rk, SECRET)
    for rk in {run_key(d.project_name, d.run_id) for d in docs}:
        await finish_run(stores, rk, "completed", b'{"status":"completed"}')
    if not record:
        return
    claims = await stores.deliveries.claim_deliveries(100)
    assert len(claims) == len(docs)
    for c in claims:
        a = Attempt(attempt=1, at=1, status_code=410, error="http_410", duration_ms=1.0)
        await stores.deliveries.record_attempt(c, a, DeliveryOutcome.GONE, 0)


async def test_bulk_redeliver_walks_the_index_in_bounded_batches(redis_client: Redis) -> None:
    stores = open_stores(redis_client)
    urls = [
        "http://A.example:8080/x",
        "http://a.example/y",
        "http://[::1]:9/z",
        "http://b.example/",
    ]
    alpha = [doc("alpha", f"run-{i % 2}", f"{urls[i % 4]}{i}", 1_000 + i) for i in range(9)]
    beta = [doc("beta", "run-0", "http://a.example/x", 1_000)]
    await gone(stores, alpha + beta)
    controls = stores.controls
    # One batch examines at most `limit` entries; started ones leave the index.
    query = RedeliverQuery(state=SubState.GONE, host="a.example")
    step = await controls.redeliver_batch("alpha", query, 0, 2)
    assert (step.count, step.offset, step.done) == (2, 0, False)
    step = await controls.redeliver_batch("alpha", query, step.offset, 2)
    assert (step.count, step.offset) == (0, 2)  # [::1] and b.example are kept
    rest = await redeliver_matching(controls, "alpha", query, batch=2)
    assert rest == 3  # 5 on a.example in all (either port), 2 started above
    started = {d.id for d in alpha if "a.example" in d.callback_url.lower()}
    for d in alpha:
        sub = await stores.subscriptions.get_subscription(d.id, "alpha")
        assert sub is not None
        assert sub.state is (SubState.DELIVERING if d.id in started else SubState.GONE)
        assert sub.series == (2 if d.id in started else 1)
    beta_sub = await stores.subscriptions.get_subscription(beta[0].id, "beta")
    assert beta_sub is not None and beta_sub.state is SubState.GONE
    # By run id (the two on b.example left on run-1) and by a bracketed IPv6 host.
    assert (
        await redeliver_matching(controls, "alpha", query_for(SubState.GONE, run_id="run-1")) == 2
    )
    assert await redeliver_matching(controls, "alpha", query_for(SubState.GONE, host="[::1]")) == 2
    assert await redeliver_matching(controls, "alpha", query_for(SubState.GONE)) == 0
    late = query_for(SubState.GONE, since_ms=2**50)
    assert await redeliver_matching(stores.controls, "beta", late) == 0
    assert await redeliver_matching(stores.controls, "beta", query_for(SubState.GONE)) == 1


async def test_quota_counts_in_a_window_that_expires(redis_client: Redis) -> None:
    controls = open_stores(redis_client).controls
    assert [(await controls.take_quota("t", "alpha", 60)).count for _ in range(3)] == [1, 2, 3]
    assert (await controls.take_quota("t", "beta", 60)).count == 1
    ttl = await redis_client.pttl(keys.quota("alpha", "t"))
    assert 0 < ttl <= 60_000
    await redis_client.persist(keys.quota("alpha", "t"))  # a lost expiry is put back
    use = await controls.take_quota("t", "alpha", 60)
    assert use.count == 4 and 0 < use.ttl <= 60_000
    assert await redis_client.pttl(keys.quota("alpha", "t")) > 0


async def test_incidents_open_once_until_closed(redis_client: Redis) -> None:
    controls = open_stores(redis_client).controls
    assert await controls.open_incident("x", 60)
    assert not await controls.open_incident("x", 60)
    await controls.close_incident("x")
    assert await controls.open_incident("x", 60)


async def test_operational_webhook_round_trip_per_client(redis_client: Redis) -> None:
    controls = open_stores(redis_client).controls
    hook = OperationalHook(url="http://127.0.0.1:9/ops", headers={"Authorization": "t"})
    await controls.set_operational_webhook("alpha", hook)
    assert await controls.operational_webhook("alpha") == hook
    assert await controls.operational_webhook("beta") is None
    assert await controls.delete_operational_webhook("alpha")
    assert not await controls.delete_operational_webhook("alpha")
    assert await controls.operational_webhook("alpha") is None


async def test_owner_and_fingerprint_are_checked_atomically(redis_client: Redis) -> None:
    subs = open_stores(redis_client).subscriptions
    rk = run_key("proj", "run-x")
    first = doc("alpha", "run-x", "http://a.example/", 1)
    reg = await subs.register(first, rk, SECRET, fingerprint="f1", owner_only=True)
    assert reg.action is RegisterAction.POLL
    assert await subs.run_owner(rk) == "alpha"
    other = doc("beta", "run-x", "http://b.example/", 2)
    refused = await subs.register(other, rk, SECRET, fingerprint="f1", owner_only=True)
    assert refused.action is RegisterAction.NOT_OWNER
    assert await subs.get_subscription_any(other.id) is None
    shared = await subs.register(other, rk, SECRET, fingerprint="f1", owner_only=False)
    assert shared.action is RegisterAction.JOIN
    again = doc("alpha", "run-x", "http://a.example/", 3)
    same = await subs.register(again, rk, SECRET, fingerprint="f1", owner_only=True)
    assert (same.action, same.id) == (RegisterAction.EXISTING, first.id)
    changed = await subs.register(again, rk, SECRET, fingerprint="f2", owner_only=True)
    assert (changed.action, changed.id) == (RegisterAction.CONFLICT, first.id)
    assert await subs.get_subscription_any(again.id) is None


async def test_an_alert_is_queued_only_once_the_final_attempt_is_recorded(
    redis_client: Redis, redis_url: str
) -> None:
    settings = Settings.from_env(base_env(redis_url, "http://127.0.0.1:9"))
    deps = await open_deps(settings, redis_client, WorkerMetrics())
    try:
        stores = deps.store
        hook = OperationalHook(url="http://127.0.0.1:9/ops")
        await stores.controls.set_operational_webhook("alpha", hook)
        ending, fine = doc("alpha", "r", "http://a.example/1", 1), doc("alpha", "r", "http://b/", 2)
        await gone_or_delivered(stores, [ending, fine], record=False)
        claims = {c.subscription_id: c for c in await stores.deliveries.claim_deliveries(10)}
        await subscription_ending(deps, claims[ending.id])
        assert await redis_client.exists(f"{job_key_prefix}opc:{ending.id}:1")
        ctx: dict[str, Any] = {"deps": deps, "job_try": 1}
        # Not recorded yet (or the worker died before recording): look again later.
        with pytest.raises(Retry):
            await confirm_operational(ctx, ending.id, 1)
        assert await confirm_operational({**ctx, "job_try": 10}, ending.id, 1) == "gave_up"
        a = Attempt(attempt=1, at=1, status_code=410, error="http_410", duration_ms=1.0)
        await stores.deliveries.record_attempt(claims[ending.id], a, DeliveryOutcome.GONE, 0)
        assert await confirm_operational(ctx, ending.id, 1) == "queued"
        queued = [k async for k in redis_client.scan_iter(match=f"{job_key_prefix}op:*")]
        assert len(queued) == 1
        assert await confirm_operational(ctx, ending.id, 2) == "superseded"
        ok = Attempt(attempt=1, at=1, status_code=200, error=None, duration_ms=1.0)
        await stores.deliveries.record_attempt(claims[fine.id], ok, DeliveryOutcome.DELIVERED, 0)
        assert await confirm_operational(ctx, fine.id, 1) == "not_ended"
    finally:
        await deps.sender.aclose()
        await deps.intuned.aclose()


async def test_the_default_fingerprint_is_not_stored_and_still_compared(
    redis_client: Redis,
) -> None:
    """'' is the default registration ({} metadata, no headers): stored as no field at all, and
    a repeat with other metadata or header names is still a conflict."""
    subs = open_stores(redis_client).subscriptions
    rk = run_key("proj", "run-s")
    plain = doc("alpha", "run-s", "http://a.example/", 1)
    assert (await subs.register(plain, rk, SECRET)).action is RegisterAction.POLL
    assert not await redis_client.hexists(keys.sub(plain.id), SubField.FINGERPRINT.value)
    again = await subs.register(doc("alpha", "run-s", "http://a.example/", 2), rk, SECRET)
    assert (again.action, again.id) == (RegisterAction.EXISTING, plain.id)
    changed = await subs.register(
        doc("alpha", "run-s", "http://a.example/", 3), rk, SECRET, fingerprint="f1"
    )
    assert (changed.action, changed.id) == (RegisterAction.CONFLICT, plain.id)
