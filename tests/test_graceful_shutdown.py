"""SIGTERM during deliveries: the worker finishes what it holds within the grace and exits 0;
another worker delivers the rest; nothing is lost and nothing is sent twice beyond the
deliveries that were in flight at the signal. arq's jobs stop the same way: those that finish
within the grace are done, the rest go back to arq's queue, and no arq task outlives the stop,
not even one that lost its cancellation (Python 3.11's ``asyncio.wait_for``, under which redis-py
sends every command, drops a cancellation that arrives as the command's write completes)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.workers import StartWorker
from workers import runner
from workers.runner import stop_arq

SUBSCRIPTIONS = 50
SLOW_MS = 300
GRACE_S = 5.0


async def delivered(api: AsyncTestClient[Any]) -> int:
    resp = await api.get("/v1/subscriptions?state=delivered&limit=200", headers=AUTH_ALPHA)
    return len(resp.json()["items"])


async def test_sigterm_mid_delivery_drains_and_another_worker_finishes(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=1, result={"ok": True}))
    for i in range(SUBSCRIPTIONS):
        body = {
            "projectName": "demo-project",
            "runId": run_id,
            "callbackUrl": receiver.url(f"/slow/{SLOW_MS}/sub-{i}"),
        }
        resp = await api.post("/v1/subscriptions", json=body, headers=AUTH_ALPHA)
        assert resp.status_code == 201, resp.text
    # Eight at a time, 300 ms each: about two seconds of deliveries, so the signal lands mid-way.
    first = start_worker(RELAY_WORKER_CONCURRENCY="8", RELAY_SHUTDOWN_GRACE=f"{GRACE_S}s")
    await receiver.wait_for_async(12, timeout=20)

    signalled = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    arrived = receiver.requests
    in_flight = sum(1 for r in arrived if r.monotonic > signalled - SLOW_MS / 1000)
    assert 1 <= in_flight <= 8
    code = first.proc.wait(GRACE_S + 5)
    assert code == 0, first.log_path.read_text()[-2000:]
    assert time.monotonic() - signalled < GRACE_S + 4
    log = first.log_path.read_text()
    assert "worker_stopping" in log and "worker_stopped" in log
    assert len(receiver.requests) < SUBSCRIPTIONS, "the worker must stop taking new work"

    start_worker(RELAY_WORKER_CONCURRENCY="8")
    await wait_until(lambda: _all_delivered(api), timeout=25, interval=0.2)
    requests = receiver.requests
    ids = {r.webhook_id for r in requests}
    assert len(ids) == SUBSCRIPTIONS
    assert len(requests) - SUBSCRIPTIONS <= in_flight


async def _all_delivered(api: AsyncTestClient[Any]) -> bool:
    return await delivered(api) == SUBSCRIPTIONS


async def test_arq_jobs_finish_within_the_grace_or_go_back_to_the_queue(
    redis_client: Redis,
) -> None:
    queue = "test:arq"
    never = asyncio.Event()

    async def quick(ctx: dict[str, Any]) -> None:
        await asyncio.sleep(0.3)

    async def stuck(ctx: dict[str, Any]) -> None:
        await never.wait()

    pool = ArqRedis(redis_client.connection_pool, default_queue_name=queue)
    worker = Worker(
        functions=[func(quick, name="quick"), func(stuck, name="stuck")],
        redis_pool=pool,
        queue_name=queue,
        handle_signals=False,
        keep_result=0,
        poll_delay=0.05,
    )
    jobs = [await pool.enqueue_job(name) for name in ("quick", "stuck")]
    quick_id, stuck_id = [job.job_id for job in jobs if job is not None]
    worker.main_task = asyncio.ensure_future(worker.main())
    await wait_until(lambda: len(worker.job_tasks) == 2, timeout=10, interval=0.02)

    await stop_arq(worker, grace=2.0)

    assert worker.main_task.done()
    assert all(t.done() for t in worker.tasks.values()) and not worker.job_tasks
    assert await redis_client.zscore(queue, quick_id) is None  # finished: off the queue
    assert await redis_client.zscore(queue, stuck_id) is not None  # handed back
    assert not await redis_client.exists(in_progress_key_prefix + stuck_id)  # at once


async def test_a_loop_busy_in_redis_calls_always_ends_under_cancel_and_wait(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether a cancellation gets lost depends on the CPython build: pyenv's 3.11.7 here lost
    # about 1 in 3 of these; Debian's 3.11.2 none in 300. Where it is lost, one plain cancel()
    # would leave the task polling and the timeout below would fail the test; the deterministic
    # case is the stop_arq test after this one.
    monkeypatch.setattr(runner, "RECANCEL_AFTER", 0.05)
    client = Redis.from_url(redis_url, socket_timeout=10)  # commands go through wait_for

    async def busy() -> None:
        while True:
            await client.ping()

    try:
        for _ in range(300):
            task = asyncio.create_task(busy())
            await asyncio.sleep(0.001)
            async with asyncio.timeout(10):
                await runner.cancel_and_wait(task)
            assert task.cancelled()
    finally:
        await client.aclose()


async def test_stop_arq_ends_a_poll_loop_that_swallowed_the_first_cancellation(
    redis_client: Redis,
) -> None:
    pool = ArqRedis(redis_client.connection_pool, default_queue_name="test:arq")
    worker = Worker(
        functions=[func(asyncio.sleep, name="nap")],
        redis_pool=pool,
        queue_name="test:arq",
        handle_signals=False,
    )
    lost = asyncio.Event()

    async def poll_loop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost.set()  # what wait_for does when the write completed: go on polling
        while True:
            await asyncio.sleep(0.05)

    worker.main_task = asyncio.ensure_future(poll_loop())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await stop_arq(worker, grace=1.0)
    assert lost.is_set() and worker.main_task.cancelled()
