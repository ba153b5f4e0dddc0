"""The end-to-end bundle (fixture ``e2e``): the API in-process, the fake Intuned, a loopback
receiver and the two worker starters (``tests.support.workers``), with the calls every story makes.

A story asks for ``e2e`` instead of the separate fixtures, starts the workers it needs (in its
loop: ``await e2e.start_inproc_worker(...)``; a real process only when the process is under test:
``e2e.start_worker(...)``), scripts runs, subscribes the receiver and waits for states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import (
    AUTH_ALPHA,
    reach_state,
    signing_secret_of,
    subscribe,
    subscription_state,
    subscription_view,
)
from tests.support.workers import StartInprocWorker, StartWorker


@dataclass
class E2E:
    """The relay end to end, as a story drives it."""

    api: AsyncTestClient[Any]
    intuned: FakeIntunedHandle
    receiver: ReceiverHandle
    start_inproc_worker: StartInprocWorker
    start_worker: StartWorker

    def run(self, **script: Any) -> str:
        """A run on the fake Intuned scripted by ``RunScript`` fields; its id."""
        return self.intuned.state.create_run(RunScript(**script))

    async def subscribe(
        self, run_id: str, path: str, auth: dict[str, str] = AUTH_ALPHA, **extra: Any
    ) -> str:
        """Subscribe the receiver's ``path`` to the run (201); the subscription's id."""
        return str((await self.register(run_id, path, auth, **extra))["id"])

    async def register(
        self, run_id: str, path: str, auth: dict[str, str] = AUTH_ALPHA, **extra: Any
    ) -> dict[str, Any]:
        """Like ``subscribe``, answering the whole view the API returned."""
        return await subscribe(self.api, run_id, self.receiver.url(path), auth, **extra)

    async def view(self, sid: str, auth: dict[str, str] = AUTH_ALPHA) -> dict[str, Any]:
        """The subscription as the API shows it."""
        return await subscription_view(self.api, sid, auth)

    async def state(self, sid: str, auth: dict[str, str] = AUTH_ALPHA) -> str:
        """The subscription's current state."""
        return await subscription_state(self.api, sid, auth)

    async def reach(
        self, sid: str, state: str, auth: dict[str, str] = AUTH_ALPHA, timeout: float = 20.0
    ) -> None:
        """Wait until the subscription is in ``state``."""
        await reach_state(self.api, sid, state, auth, timeout)

    async def secret(self, auth: dict[str, str] = AUTH_ALPHA) -> str:
        """The client's signing secret (created on first use)."""
        return await signing_secret_of(self.api, auth)


@pytest.fixture
def e2e(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
    start_worker: StartWorker,
) -> E2E:
    """The API, the fake Intuned, a receiver and the worker starters, bundled (no worker yet)."""
    return E2E(api, fake_intuned, receiver, start_inproc_worker, start_worker)
