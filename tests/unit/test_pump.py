"""``workers.pump.Pump`` in-process with an in-memory due list: claiming, limits, errors, stop.

The pump's collaborators are plain callables, so these tests hand it a list instead of Redis;
the Redis-backed claims are covered by tests/test_store_v2.py and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from workers import pump as pump_module
from workers.pump import Pump

BOUND = 10.0  # seconds a test may wait for the pump before it counts as stuck (never asserted)


class Due:
    """An in-memory due set: ``claim`` leases from the front; ``release`` puts items back."""

    def __init__(self, items: Sequence[int] = ()) -> None:
        self.items = list(items)
        self.claims: list[int] = []  # the limit asked for, per claim call
        self.released: list[int] = []
        self.fail_claims = 0

    async def claim(self, limit: int) -> list[int]:
        self.claims.append(limit)
        if self.fail_claims:
            self.fail_claims -= 1
            raise ConnectionError("redis went away")
        taken, self.items = self.items[:limit], self.items[limit:]
        return taken

    async def next_due(self) -> int | None:
        return 0 if self.items else None

    async def release(self, items: Sequence[int]) -> None:
        self.released.extend(items)


def make_pump(due: Due, handle: Callable[[int], Awaitable[None]], **kw: int) -> Pump[int]:
    return Pump(
        "test",
        claim=due.claim,
        handle=handle,
        next_due=due.next_due,
        release=due.release,
        concurrency=kw.get("concurrency", 4),
        batch=kw.get("batch", 256),
        idle_max=60.0,  # long: only wake() or due work moves the pump on
    )


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND):
        while not condition():
            await asyncio.sleep(0.001)


async def test_every_item_runs_once_within_the_concurrency_limit() -> None:
    due = Due(range(50))
    done: list[int] = []
    running = peak = 0

    async def handle(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        done.append(item)

    pump = make_pump(due, handle, concurrency=4, batch=3)
    pump.start()
    await until(lambda: len(done) == 50)
    await pump.stop(grace=1.0)
    assert sorted(done) == list(range(50))
    assert peak <= 4
    assert max(due.claims) <= 3  # never more than a batch per claim
    assert due.released == []


async def test_wake_claims_new_work_without_waiting_for_the_idle_sleep() -> None:
    due = Due()
    done: list[int] = []

    async def handle(item: int) -> None:
        done.append(item)

    pump = make_pump(due, handle)
    pump.start()
    await until(lambda: len(due.claims) == 1)  # claimed nothing, now idle for 60 s
    due.items = [7, 8]
    pump.wake()
    await until(lambda: sorted(done) == [7, 8])
    await pump.stop(grace=1.0)


async def test_a_handler_error_or_a_claim_error_does_not_stop_the_pump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pump_module, "ERROR_PAUSE", 0.001)
    due = Due([1, 2, 3])
    due.fail_claims = 2
    done: list[int] = []

    async def handle(item: int) -> None:
        if item == 2:
            raise RuntimeError("a handler bug")
        done.append(item)

    pump = make_pump(due, handle)
    pump.start()
    await until(lambda: sorted(done) == [1, 3])
    await until(lambda: pump.in_flight == 0)
    pump.wake()
    due.items = [4]
    await until(lambda: 4 in done)
    await pump.stop(grace=1.0)
    assert len(due.claims) >= 3  # two failed claims, then the work


async def test_stop_lets_quick_handlers_finish_and_releases_the_stuck_ones() -> None:
    due = Due([1, 2, 3])
    started: list[int] = []
    finished: list[int] = []
    gate = asyncio.Event()

    async def handle(item: int) -> None:
        started.append(item)
        if item != 1:
            await gate.wait()  # never set: these outlive the grace
        finished.append(item)

    pump = make_pump(due, handle)
    pump.start()
    await until(lambda: len(started) == 3)
    await pump.stop(grace=0.05)
    assert finished == [1]
    assert sorted(due.released) == [2, 3]
    assert pump.in_flight == 0
