"""Regression tests for bugs the reliability suite found (each names the bug it pins)."""

from __future__ import annotations

from typing import Any

import msgspec
import redis
from arq.jobs import deserialize_job, job_key_prefix
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import run_key
from tests.support.intuned_fixtures import FAKE_WORKSPACE_ID
from tests.support.receiver import ReceiverHandle
from tests.support.reliability import register_many


async def test_api_enqueues_jobs_the_worker_can_decode(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    redis_sync: redis.Redis,
) -> None:
    """Bug: the API's arq pool pickled jobs while workers decode msgpack, so every poll_now and
    deliver_now kick failed with 'deserializing job ... failed' and waited for the pumps."""
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    await register_many(api, [(run_id, receiver.url("/ok"))])
    rk = run_key(FAKE_WORKSPACE_ID, "demo-project", run_id)
    raw = redis_sync.get(f"{job_key_prefix}poll:{rk}")
    assert raw is not None
    job = deserialize_job(raw, deserializer=msgspec.msgpack.decode)
    assert (job.function, list(job.args)) == ("poll_now", [rk])
