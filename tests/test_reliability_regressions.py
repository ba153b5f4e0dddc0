"""Regression tests for bugs the reliability suite found (each names the bug it pins)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.store import keys
from tests.support.receiver import ReceiverHandle
from tests.support.reliability import register_many


async def test_a_registration_that_starts_a_watch_wakes_the_poll_pumps(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    redis_url: str,
) -> None:
    """Bug (v0.1): the API's first-poll kick was an arq job encoded with the wrong codec, so
    every first poll waited for the pumps. Now the registering script itself publishes the
    wake-up the workers' pumps listen to: no job, no codec."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with client.pubsub(ignore_subscribe_messages=True) as ps:
            await ps.subscribe(keys.WAKE_POLL)
            run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
            await register_many(api, [(run_id, receiver.url("/ok"))])
            message = None
            async with asyncio.timeout(5):
                while message is None:
                    message = await ps.get_message(timeout=1.0)
            assert message["channel"] == keys.WAKE_POLL.encode()
    finally:
        await client.aclose()
