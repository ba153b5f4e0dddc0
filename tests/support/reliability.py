"""Helpers of the reliability suite (tests/test_reliability_*.py): a real ``relay api`` process,
bulk registration, subscription states read straight from Redis, and duplicate counting.

Everything here talks to loopback only. This module is test support: ``relay`` must never
import it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import redis

from relay.embedded_redis import free_port
from tests.support.receiver import ReceivedRequest
from tests.support.relay_fixtures import AUTH_ALPHA, ROOT


class ApiProcess:
    """A real ``relay api`` child process on a free loopback port, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("ab")
        full = {**os.environ, **env, "RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "api"],
            env=full,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until ``/healthz`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay api exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("relay api did not answer /healthz")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class StartApi(Protocol):
    def __call__(self, **overrides: str) -> ApiProcess: ...


@pytest.fixture
def start_api(relay_env: dict[str, str], tmp_path: Path) -> Iterator[StartApi]:
    """Start real ``relay api`` processes (env overrides as keyword arguments); stopped after."""
    procs: list[ApiProcess] = []

    def start(**overrides: str) -> ApiProcess:
        proc = ApiProcess({**relay_env, **overrides}, tmp_path / f"api-{len(procs)}.log")
        procs.append(proc)
        proc.wait_ready()
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()


class Poster(Protocol):
    async def post(self, url: str, **kwargs: Any) -> httpx.Response: ...


async def register_many(
    client: Poster,
    items: Sequence[tuple[str, str]],
    *,
    auth: dict[str, str] = AUTH_ALPHA,
    concurrency: int = 1,
    project: str = "demo-project",
) -> list[str]:
    """Register ``(run_id, callback_url)`` pairs; return the subscription ids in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(run_id: str, url: str) -> str:
        async with gate:
            body = {"projectName": project, "runId": run_id, "callbackUrl": url}
            resp = await client.post("/v1/subscriptions", json=body, headers=auth)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    return list(await asyncio.gather(*(one(r, u) for r, u in items)))


def states(client: redis.Redis, sids: Sequence[str]) -> dict[str, str | None]:
    """Each subscription's state, read from Redis in one pipeline (None: no such key)."""
    pipe = client.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(f"r:s:{sid}", "st")
    return {
        sid: (v.decode() if v is not None else None)
        for sid, v in zip(sids, pipe.execute(), strict=True)
    }


def state_counts(client: redis.Redis, sids: Sequence[str]) -> Counter[str | None]:
    """How many of ``sids`` are in each state."""
    return Counter(states(client, sids).values())


def webhook_counts(requests: Iterable[ReceivedRequest]) -> Counter[str]:
    """How many requests arrived per ``webhook-id``."""
    return Counter(r.webhook_id or "" for r in requests)


def duplicates(requests: Iterable[ReceivedRequest]) -> int:
    """Extra requests beyond the first, summed over webhook ids."""
    return sum(n - 1 for n in webhook_counts(requests).values())
