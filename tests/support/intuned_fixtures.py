"""Fixtures for the fake Intuned: a real server in its own thread and a client connected to it.

The fixture's fake has rate limiting OFF, so end-to-end tests may poll fast; a test that wants
Intuned's documented 20 requests/minute calls
``fake_intuned.state.set_rate_limit(RateLimitConfig())``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from relay.embedded_redis import free_port
from relay.fake_intuned import (
    FakeConfig,
    FakeIntuned,
    FakeIntunedHandle,
    RateLimitConfig,
    start_in_thread,
)
from relay.intuned.client import IntunedClient

FAKE_WORKSPACE_ID = "123e4567-e89b-12d3-a456-426614174000"
FAKE_API_KEY = "test-intuned-key-0123456789"
OTHER_WORKSPACE_ID = "00000000-0000-4000-8000-000000000002"
OTHER_API_KEY = "test-intuned-key-other-workspace"
CLIENT_TIMEOUT = 2.0

MakeFake = Callable[..., FakeIntunedHandle]


def unreachable_intuned(timeout: float = 1.0) -> IntunedClient:
    """A client of the fake's workspace on a loopback port where nothing listens (refused)."""
    base = f"http://127.0.0.1:{free_port()}/api/v1/workspace"
    return IntunedClient(base, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=timeout)


class ManualClock:
    """A clock for the fake that moves only when a test says so (thread-safe)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self._now += seconds


def _no_rate_limit() -> FakeConfig:
    return FakeConfig(rate_limit=RateLimitConfig(enabled=False))


@pytest.fixture
def make_fake_intuned() -> Iterator[MakeFake]:
    """Start fakes with custom options (``workspaces``, ``clock``, ``config``...); stop after."""
    handles: list[FakeIntunedHandle] = []

    def make(**options: Any) -> FakeIntunedHandle:
        options.setdefault("workspaces", {FAKE_WORKSPACE_ID: FAKE_API_KEY})
        options.setdefault("config", _no_rate_limit())
        handle = start_in_thread(FakeIntuned(**options))
        handles.append(handle)
        return handle

    try:
        yield make
    finally:
        for handle in handles:
            handle.stop()


@pytest.fixture
def fake_intuned(make_fake_intuned: MakeFake) -> FakeIntunedHandle:
    """A fresh fake on a free loopback port: workspace FAKE_WORKSPACE_ID, key FAKE_API_KEY."""
    return make_fake_intuned()


@pytest.fixture
async def intuned_client(fake_intuned: FakeIntunedHandle) -> AsyncIterator[IntunedClient]:
    """Our client connected to ``fake_intuned`` with a short timeout."""
    client = IntunedClient(
        fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=CLIENT_TIMEOUT
    )
    async with client:
        yield client
