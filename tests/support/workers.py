"""Workers for tests: in the test's own event loop (``start_inproc_worker``) or as real
``relay worker`` processes (``start_worker``). Both take env overrides as keyword arguments on top
of ``relay_env`` and stop every worker they started, gracefully, at teardown.

Prefer the in-process worker: ``workers.runner.run_worker`` as a task next to the in-process API,
as arq's own tests run its Worker; it starts in milliseconds and costs no interpreter. Start a
process only when the process is what is under test: a SIGKILL or SIGTERM, its exit code, its log
file, its /metrics port, its pid, several processes on one host, or a test that blocks its thread.
A test with an in-process worker must never block its loop (``time.sleep``, ``receiver.wait_for``):
the worker would stand still meanwhile.

This module must never kill anything but its own processes (by pid), leave a worker task running
after its test, or swallow what an in-process worker raised: that fails the test at its stop.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.model import now_ms
from relay.settings import Settings
from relay.store import keys
from tests.support.processes import RelayProcess
from workers.runner import ARQ_HAND_BACK_WAIT, run_worker

START_TIMEOUT = 15.0


def worker_env(relay_env: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment: the test's relay settings with ``overrides`` on top."""
    return {**relay_env, **overrides}


class WorkerProcess(RelayProcess):
    """A real ``relay worker`` child process whose log goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["worker"], env, log_path)

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the worker logged that it started."""
        self.wait_for_log("worker_started", timeout)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        return self.stop(timeout)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(relay_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Start real worker processes (env overrides as keyword arguments); all stopped after."""
    procs: list[WorkerProcess] = []

    def start(wait: bool = True, **overrides: str) -> WorkerProcess:
        proc = WorkerProcess(
            worker_env(relay_env, overrides), tmp_path / f"worker-{len(procs)}.log"
        )
        procs.append(proc)
        if wait:
            proc.wait_started()
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()


class InprocWorker:
    """``run_worker(settings)`` as a task in the running loop, with its own stop event."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(run_worker(settings, stop=self._stop, clock=clock))

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stop.is_set()

    async def wait_started(self, listening: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``listening`` workers listen for wake-ups (this one among them: it has
        opened its clients and started its pumps); raise what the task raised if it ended."""
        assert self.settings.redis_url is not None
        redis = Redis.from_url(self.settings.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while not self.task.done():
                [(_, subscribed)] = await redis.pubsub_numsub(keys.WAKE_POLL)
                if int(subscribed) >= listening:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the in-process worker did not start in {timeout}s")
                await asyncio.sleep(0.01)
        finally:
            await redis.aclose()
        self._stop.set()  # ended: what it raised is raised here, not again at teardown
        self.task.result()
        raise RuntimeError("the in-process worker returned while starting")

    async def stop(self) -> None:
        """Stop as on SIGTERM (in-flight work gets RELAY_SHUTDOWN_GRACE) and wait for the task;
        raise what it raised, or TimeoutError (after cancelling it) if it does not end."""
        self._stop.set()
        limit = self.settings.shutdown_grace + ARQ_HAND_BACK_WAIT + 10
        done, _ = await asyncio.wait({self.task}, timeout=limit)
        if not done:
            stuck = waits()
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            raise TimeoutError(f"the in-process worker did not stop within {limit}s:\n{stuck}")
        self.task.result()


def waits() -> str:
    """What every other task of the running loop awaits, one line each (outermost call first)."""
    lines: list[str] = []
    for task in asyncio.all_tasks():
        steps: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            name = getattr(coro, "__qualname__", type(coro).__name__)
            steps.append(f"{name}:{frame.f_lineno if frame else '?'}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        if task is not asyncio.current_task():
            lines.append(" -> ".join(steps))
    return "\n".join(sorted(lines))


StartInprocWorker = Callable[..., Awaitable[InprocWorker]]


@pytest.fixture
async def start_inproc_worker(relay_env: dict[str, str]) -> AsyncIterator[StartInprocWorker]:
    """Start workers in the test's loop (env overrides as keyword arguments, ``clock=`` for a
    skewed wall clock); each call returns once its worker runs. All are stopped after, and what
    one raised fails the test; the loop's SIGTERM/SIGINT handlers are put back as they were."""
    workers: list[InprocWorker] = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    async def start(clock: Callable[[], int] = now_ms, **overrides: str) -> InprocWorker:
        if overrides.get("RELAY_WORKER_METRICS_PORT", "0") != "0":
            raise ValueError("run_worker never closes its /metrics server: use start_worker")
        worker = InprocWorker(Settings.from_env(worker_env(relay_env, overrides)), clock)
        workers.append(worker)
        await worker.wait_started(sum(not (w.stopping or w.task.done()) for w in workers))
        return worker

    try:
        yield start
    finally:
        running = [w for w in workers if not w.stopping]
        outcomes = await asyncio.gather(*(w.stop() for w in running), return_exceptions=True)
        if workers:  # run_worker set them to its stop event
            loop = asyncio.get_running_loop()
            for sig, handler in handlers.items():
                loop.remove_signal_handler(sig)
                if handler is not None:
                    signal.signal(sig, handler)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
