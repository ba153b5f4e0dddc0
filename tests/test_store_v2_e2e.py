"""Store v2 end to end, with workers in the test's loop: Redis's clock against a skewed worker
clock, results above RELAY_MAX_RESULT_BYTES, deliveries without a signing secret, and a
10,000-subscriber run fanned out in bounded batches with no command in Redis's SLOWLOG that grows
with it (tests/support/slowlog.py says how SLOWLOG is judged)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from redis.asyncio import Redis

from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import now_ms, run_key
from relay.store import keys
from tests.support.api_helpers import api_client, make_doc
from tests.support.e2e import E2E
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.reliability import register_many, state_counts, webhook_counts
from tests.support.slowlog import WORK_BOUND, over_the_line, script_work, slowlog
from tests.support.store_helpers import open_stores
from tests.support.workers import StartInprocWorker


async def test_a_worker_with_a_skewed_clock_neither_steals_nor_starves(
    e2e: E2E,
    redis_sync: redis.Redis,
) -> None:
    workers = [
        await e2e.start_inproc_worker(),
        await e2e.start_inproc_worker(clock=lambda: now_ms() + 120_000),
    ]
    runs = [e2e.run(pending_polls=3, outcome="completed", result=i) for i in range(20)]
    sids = await register_many(e2e.api, [(r, e2e.receiver.url(f"/ok/{r}")) for r in runs])
    await wait_until(lambda: state_counts(redis_sync, sids) == {"delivered": 20}, timeout=40)
    for worker in workers:
        await worker.stop()
    # One poller per run: 3 pending answers and the terminal one, never a concurrent extra.
    assert [e2e.intuned.state.poll_count(r) for r in runs] == [4] * 20
    # No duplicate attempts: one webhook per subscription, one attempt each.
    assert sorted(webhook_counts(e2e.receiver.requests).values()) == [1] * 20
    for sid in sids:
        view = (await e2e.api.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).json()
        assert len(view["attempts"]) == 1


async def test_a_result_over_the_limit_ends_the_watch_with_result_too_large(
    e2e: E2E,
) -> None:
    await e2e.start_inproc_worker(RELAY_MAX_RESULT_BYTES="1KiB")
    run_id = e2e.run(outcome="completed", result="x" * 5000)
    await register_many(e2e.api, [(run_id, e2e.receiver.url("/ok/big"))])
    [req] = await e2e.receiver.wait_for_async(1, timeout=20)
    event = json.loads(req.body)
    assert event["type"] == "run.watch_failed"
    assert event["data"]["failure"]["code"] == "result_too_large"
    assert "RELAY_MAX_RESULT_BYTES" in event["data"]["failure"]["message"]
    assert "result" not in event["data"]
    # Nothing of the big result was stored.
    run = await e2e.api.get(f"/v1/runs/demo-project/{run_id}", headers=AUTH_ALPHA)
    assert run.status_code == 404 and "no result" in run.json()["detail"]


async def test_a_delivery_without_a_secret_fails_clearly_and_creates_none(
    e2e: E2E,
    redis_sync: redis.Redis,
) -> None:
    run_id = e2e.run(pending_polls=2, outcome="completed", result=1)
    [sid] = await register_many(e2e.api, [(run_id, e2e.receiver.url("/ok/nosecret"))])
    assert redis_sync.exists(keys.secrets("alpha"))  # the first subscription made it
    redis_sync.delete(keys.secrets("alpha"))  # as after a Redis data loss
    await e2e.start_inproc_worker()
    await wait_until(lambda: state_counts(redis_sync, [sid]) == {"exhausted": 1}, timeout=20)
    view = (await e2e.api.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).json()
    assert {a["error"] for a in view["attempts"]} == {"no_signing_secret"}
    assert e2e.receiver.requests == [] and not redis_sync.exists(keys.secrets("alpha"))
    # The API creates one; a redelivery then goes out signed with it.
    secret = (await e2e.api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    assert (
        await e2e.api.post(f"/v1/subscriptions/{sid}/redeliver", headers=AUTH_ALPHA)
    ).status_code == 202
    [req] = await e2e.receiver.wait_for_async(1, timeout=20)
    verify(req, secret)


@pytest.mark.parametrize(
    "n", [10_000, pytest.param(100_000, marks=[pytest.mark.slow, pytest.mark.timeout(1800)])]
)
async def test_many_subscribers_fan_out_in_bounded_steps(
    n: int,
    redis_url: str,
    relay_env: dict[str, str],
    start_inproc_worker: StartInprocWorker,
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    redis_sync: redis.Redis,
) -> None:
    client = Redis.from_url(redis_url)
    store = open_stores(client, max_subscriptions_per_run=n, max_subscriptions_per_client=n)
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=2, outcome="completed", result=[1])
    )
    rk = run_key("demo-project", run_id)
    with script_work(redis_url) as work, slowlog(redis_sync) as entries:
        for lo in range(0, n, 500):
            docs = [
                make_doc(
                    "alpha", "demo-project", run_id, now_ms(), callback_url=receiver.url(f"/ok/{i}")
                )
                for i in range(lo, min(n, lo + 500))
            ]
            await asyncio.gather(
                *(store.subscriptions.register(d, rk, "whsec_dGVzdA==") for d in docs)
            )
        await start_inproc_worker(RELAY_WORKER_CONCURRENCY="128")
        # Distinct webhooks, not requests: under load an attempt can time out after the receiver
        # got it and go again, so n requests can arrive before the last webhook has.
        await wait_until(lambda: len(webhook_counts(receiver.requests)) >= n, timeout=60 + n / 100)
        async with api_client({**relay_env}) as api:
            page = await api.get(f"/v1/subscriptions?runId={run_id}&limit=200", headers=AUTH_ALPHA)
            assert page.status_code == 200 and len(page.json()["items"]) == 200
            assert {i["state"] for i in page.json()["items"]} <= {"delivered", "delivering"}
    await client.aclose()
    assert len(webhook_counts(receiver.requests)) == n
    slow = over_the_line(entries)
    print(f"script calls: {work.calls}, most commands in one: {work.most} ({work.heaviest!r})")
    # A call that walked the subscribers would run at least n commands; the batches run a few
    # hundred (fan-out: FANOUT_BATCH subscribers; claims: CLAIM_BATCH deliveries).
    assert work.calls > n and 0 < work.most <= WORK_BOUND
    if n > 10_000:  # the slow set runs alone, on a quiet machine: SLOWLOG's 20 ms line holds
        assert slow == [], slow[:5]
