"""Reliability 3, receiver outage: the receivers are down (connection refused) while deliveries run
on a millisecond schedule of 5 retries (200 ms ... 3.2 s, about 6.2 s in all).

Group A's receiver comes back on the same port after three failed attempts: every subscription is
delivered on a later attempt of the same series. Group B's stays down past the whole schedule:
every subscription ends ``exhausted``, is listed by ``?state=exhausted``, and once the receiver
is back, ``redeliver`` gets it through with the same webhook-id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import ATTEMPT_DECODER, Attempt
from relay.store import keys
from tests.support.receiver import ReceiverHandle, start_receiver_in_thread
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.reliability import register_many, state_counts, webhook_counts
from tests.support.workers import StartInprocWorker

SCHEDULE = "200ms,400ms,800ms,1600ms,3200ms"
ATTEMPTS = 6
K = 10


def attempts(db: redis.Redis, sid: str) -> list[Attempt]:
    """The attempt log of a subscription, read from Redis."""
    return [ATTEMPT_DECODER.decode(a) for a in db.lrange(keys.attempts(sid), 0, -1)]


@pytest.fixture
def receivers() -> Iterator[list[ReceiverHandle]]:
    """Receivers a test starts itself (on fixed ports); all stopped after."""
    handles: list[ReceiverHandle] = []
    yield handles
    for handle in handles:
        handle.stop()


async def test_receiver_outage_within_and_past_the_schedule(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    start_inproc_worker: StartInprocWorker,
    redis_sync: redis.Redis,
    receivers: list[ReceiverHandle],
) -> None:
    port_a, port_b = free_port(), free_port()  # nobody listens: connection refused
    await start_inproc_worker(RELAY_RETRY_SCHEDULE=SCHEDULE)
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result="outage"))
    group_a = await register_many(
        api, [(run_id, f"http://127.0.0.1:{port_a}/ok/a{i}") for i in range(K)]
    )
    group_b = await register_many(
        api, [(run_id, f"http://127.0.0.1:{port_b}/ok/b{i}") for i in range(K)]
    )

    await wait_until(
        lambda: all(len(attempts(redis_sync, s)) >= 3 for s in group_a), timeout=20, interval=0.02
    )
    receivers.append(start_receiver_in_thread(port=port_a))  # back, on the same port
    await wait_until(
        lambda: state_counts(redis_sync, group_a) == {"delivered": K}, timeout=20, interval=0.1
    )
    for sid in group_a:
        log = attempts(redis_sync, sid)
        assert {a.error for a in log[:-1]} == {"connect"}, log
        assert log[-1].status_code == 200 and len(log) >= 4
        assert {a.series for a in log} == {1}
    assert sorted(webhook_counts(receivers[0].requests).values()) == [1] * K

    await wait_until(
        lambda: state_counts(redis_sync, group_b) == {"exhausted": K}, timeout=30, interval=0.1
    )
    for sid in group_b:
        assert [a.error for a in attempts(redis_sync, sid)] == ["connect"] * ATTEMPTS
    listed = await api.get("/v1/subscriptions?state=exhausted&limit=200", headers=AUTH_ALPHA)
    assert listed.status_code == 200
    assert {s["id"] for s in listed.json()["items"]} == set(group_b)

    receivers.append(start_receiver_in_thread(port=port_b))
    for sid in group_b:
        resp = await api.post(f"/v1/subscriptions/{sid}/redeliver", headers=AUTH_ALPHA)
        assert resp.status_code == 202, resp.text
    await wait_until(
        lambda: state_counts(redis_sync, group_b) == {"delivered": K}, timeout=20, interval=0.1
    )
    got = receivers[1].requests
    assert {json.loads(r.body)["data"]["subscriptionId"] for r in got} == set(group_b)
    assert sorted(webhook_counts(got).values()) == [1] * K
    for sid in group_b:
        log = attempts(redis_sync, sid)
        assert (log[-1].series, log[-1].attempt, log[-1].status_code) == (2, 1, 200)
    print(
        f"\nreceiver outage: within schedule {K}/{K} delivered; past schedule {K}/{K} exhausted,"
        f" listed, redelivered; lost=0 duplicates=0"
    )
