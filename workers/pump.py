"""A pump drains one due set: it claims due entries in batches and runs them concurrently.

Polls and delivery retries are entries in Redis due sets (``relay.store``), not one arq job
each: arq's per-job overhead would cap the relay (figures in ``bench/NOTES.md``). Each worker
process runs one pump per due set; any number of processes can pump the same set because a
claim is an atomic lease (``relay/store/lua``). A pump never dies of an error: Redis outages and
handler bugs are logged and retried after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("relay.pump")

ERROR_PAUSE = 0.5


class Pump(Generic[T]):
    """Claims due work with ``claim(limit)`` and runs ``handle(item)`` for each; ``next_due()``
    answers the milliseconds until the next entry is due (Redis's clock), None when none."""

    def __init__(
        self,
        name: str,
        *,
        claim: Callable[[int], Awaitable[Sequence[T]]],
        handle: Callable[[T], Awaitable[None]],
        next_due: Callable[[], Awaitable[int | None]],
        release: Callable[[Sequence[T]], Awaitable[None]],
        concurrency: int,
        batch: int = 256,
        idle_max: float = 0.25,
    ) -> None:
        self.name = name
        self._claim = claim
        self._handle = handle
        self._next_due = next_due
        self._release = release
        self.concurrency = concurrency
        self.batch = batch
        self.idle_max = idle_max
        # While handlers run, claim only once this many slots are free (fewer claim calls).
        self._min_claim = max(1, min(batch, concurrency // 8))
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[asyncio.Task[None], T] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """How many handlers are running now."""
        return len(self._running)

    def start(self) -> None:
        """Start pumping in the background."""
        self._task = asyncio.create_task(self._loop(), name=f"pump-{self.name}")

    def wake(self) -> None:
        """Look for due work now instead of after the idle sleep."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                # Cleared before any await of this pass: a wake() that arrives while we claim
                # or look up the next due time is not lost (the wait below returns at once).
                self._wake.clear()
                free = self.concurrency - len(self._running)
                if self._running and free < self._min_claim:
                    # Busy: claim in chunks, not one Redis round trip per finished handler.
                    await self._wait(self.idle_max)
                    continue
                items: Sequence[T] = []
                if free > 0:
                    items = await self._claim(min(free, self.batch))
                for item in items:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._run(item))
                    self._running[task] = item
                if items and len(items) == min(free, self.batch):
                    continue  # more may be due right now
                await self._idle(free > 0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the one broad except: a pump must outlive any error
                log.warning("pump_error", pump=self.name, error=repr(exc))
                await asyncio.sleep(ERROR_PAUSE)

    async def _idle(self, had_room: bool) -> None:
        delay = self.idle_max
        if had_room:
            due_in = await self._next_due()
            if due_in is not None:
                delay = min(delay, due_in / 1000)
        await self._wait(delay)

    async def _wait(self, delay: float) -> None:
        if self._wake.is_set() or delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # no extra task per wait, unlike wait_for
                await self._wake.wait()

    async def _run(self, item: T) -> None:
        try:
            await self._handle(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler bug must not kill the pump; the lease retries it
            log.error("handler_error", pump=self.name, error=repr(exc), exc_info=True)
        finally:
            self._slots.release()
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running handlers finish within ``grace``; release the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._running)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        unfinished = [t for t in pending if not t.done()]
        items = [self._running[t] for t in unfinished if t in self._running]
        for t in unfinished:
            t.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)
        if items:
            with contextlib.suppress(Exception):
                await self._release(items)
            log.info("pump_released", pump=self.name, count=len(items))
