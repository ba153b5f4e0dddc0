"""Reliability 1, worker crash: N deliveries in flight across two worker processes, one SIGKILLed.

Each worker POSTs at most C = N/4 deliveries at once (RELAY_WORKER_CONCURRENCY) and leases at
most 2C - C/4 (its delivery pump: the POSTs and those waiting for their record), fewer than N/2,
so both lease some and once the receiver has seen 2C requests arrive, both are mid-delivery. The
receiver answers slowly, so the killed worker's requests are still open when it dies: none of
them is recorded, their leases run out (RELAY_DELIVERY_TIMEOUT*2+5 s) and the survivors send them
again under the same webhook-id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from relay.fake_intuned import RunScript
from tests.support.e2e import E2E
from tests.support.relay_fixtures import wait_until
from tests.support.reliability import (
    duplicates,
    error_lines,
    register_many,
    state_counts,
    webhook_counts,
)


@pytest.mark.parametrize(
    ("n", "slow_ms", "timeout_s"),
    [
        pytest.param(100, 1000, 2, id="n100"),
        pytest.param(500, 3000, 5, id="n500", marks=pytest.mark.slow),
    ],
)
async def test_sigkill_of_one_of_two_workers_loses_no_delivery(
    e2e: E2E, redis_sync: redis.Redis, tmp_path: Path, n: int, slow_ms: int, timeout_s: int
) -> None:
    concurrency = n // 4
    env = {
        "RELAY_WORKER_CONCURRENCY": str(concurrency),
        # One receiver host: without this the per-host cap (default 8) would let a worker hold
        # only 8 of its POSTs at once, and the kill could find it with nothing in flight.
        "RELAY_MAX_IN_FLIGHT_PER_HOST": str(concurrency),
        "RELAY_DELIVERY_TIMEOUT": f"{timeout_s}s",
        "RELAY_NOT_FOUND_GRACE": "60s",
    }
    victim, other = e2e.start_worker(wait=False, **env), e2e.start_worker(wait=False, **env)
    victim.wait_started()
    other.wait_started()
    # Everyone joins the watch of a run Intuned does not know yet (404 within the grace); when
    # it appears, completed, one poll fans out N deliveries to both workers' pumps at once.
    run_id = "crash-run"
    sids = await register_many(
        e2e.api, [(run_id, e2e.receiver.url(f"/slow/{slow_ms}/{i}")) for i in range(n)]
    )
    e2e.intuned.state.create_run(RunScript(outcome="completed", result=1), run_id=run_id)
    # 2C requests arrived: each worker POSTs at most C at once, so both are mid-delivery.
    await e2e.receiver.wait_for_async(2 * concurrency, timeout=30)
    victim.kill()
    e2e.start_worker(**env)

    def all_delivered() -> bool:
        return state_counts(redis_sync, sids) == {"delivered": n}

    lease_s = timeout_s * 2 + 5
    await wait_until(all_delivered, timeout=lease_s + 30, interval=0.25)
    counts = webhook_counts(e2e.receiver.requests)
    seen = {json.loads(r.body)["data"]["subscriptionId"] for r in e2e.receiver.requests}
    dups = duplicates(e2e.receiver.requests)
    print(f"\nworker crash: n={n} delivered={n} lost=0 duplicates={dups}")
    assert seen == set(sids)
    assert len(counts) == n and min(counts.values()) >= 1
    # Only what the killed worker sent and did not record is sent twice; nothing else repeats.
    assert 0 < dups <= n // 2
    assert max(counts.values()) == 2
    assert error_lines(tmp_path.glob("worker-*.log")) == []
