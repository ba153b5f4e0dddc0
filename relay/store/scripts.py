"""Loading the Lua scripts (package resources) and calling them: maps in, Structs out.

Each script is the generated constants of ``keys.lua_constants()``, the shared ``prelude.lua``
and its own file, its enum names (``ST.WATCHING``) written as literals (``keys.lua_inline``).
A script answers a flat key/value array (or a list of them); ``decode_map`` turns one into a
Struct with msgspec, so no caller reads a value by its position (a delivery claim's map per
entry carries the entry as one JSON document, decoded in one msgspec call: ``deliveries``; a
poll claim and a poll record answer one JSON map each: ``watches``). Calls made in the same
event-loop pass share one pipelined round trip (``Batcher``); items submitted while a write is
in flight go out together in the next one (``GroupCommit``). This module must never name a key
or decide scheduling.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any, Final, Generic, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from relay.store.keys import lua_constants, lua_inline
from relay.store.types import GroupReply

T = TypeVar("T")
Item = TypeVar("Item")
S = TypeVar("S", bound=msgspec.Struct)
R = TypeVar("R", bound=GroupReply)
Arg = str | int | float | bytes


@cache
def script_source(name: str) -> str:
    """The full Lua of ``lua/<name>.lua``: constants, prelude, then the script, with the enums
    written as literals."""
    folder = resources.files("relay.store") / "lua"
    prelude = (folder / "prelude.lua").read_text()
    return lua_constants() + lua_inline(prelude + (folder / f"{name}.lua").read_text())


async def r(value: Awaitable[T] | T) -> T:
    """Await a redis-py reply (its asyncio methods are typed as sync-or-async)."""
    if inspect.isawaitable(value):
        return await value
    return value


def text(value: bytes | str | None) -> str | None:
    """A reply value as text."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


_MSGPACK: Final = msgspec.msgpack.Encoder()


def pack(value: Any) -> bytes:
    """A script's arguments as one msgpack argument, packed by msgspec in C (seam "arguments
    packed", bench/NOTES.md: redis-py packs each argument of a call in Python). Text and
    numbers only: Redis's Lua cmsgpack has no binary type."""
    return _MSGPACK.encode(value)


def decode_map(flat: Sequence[Any], kind: type[S], binary: frozenset[str] = frozenset()) -> S:
    """A script's flat key/value array as a ``kind`` Struct (fields in ``binary`` stay bytes)."""
    out: dict[str, Any] = {}
    for i in range(0, len(flat) - 1, 2):
        key = text(flat[i]) or ""
        value = flat[i + 1]
        if isinstance(value, bytes) and key not in binary:
            value = value.decode()
        out[key] = value
    return msgspec.convert(out, kind, strict=False)


class Script:
    """One registered script: ``await script(keys, args)`` answers its raw reply."""

    def __init__(self, redis: Redis, name: str, batcher: Batcher | None = None) -> None:
        self.name = name
        self._script: AsyncScript = redis.register_script(script_source(name))
        self._batcher = batcher

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if self._batcher is not None:
            return await self._batcher.call(self._script, list(keys), list(args))
        return await self._script(keys=list(keys), args=list(args))


_Pending = tuple[AsyncScript, list[str], list[Arg], "asyncio.Future[Any]"]


class Batcher:
    """Script calls made in the same event-loop pass share one pipelined round trip.

    Each script still runs atomically on its own (the pipeline is not a transaction), and each
    caller gets its own result or exception.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Pending] = []

    async def call(self, script: AsyncScript, keys: list[str], args: list[Arg]) -> Any:
        """Run ``script`` (in a batch with whatever else is due now)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        batch, self._pending = self._pending, []
        _background.add(task := asyncio.ensure_future(self._flush(batch)))
        task.add_done_callback(_background.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            script, keys, args, future = batch[0]
            try:
                _settle(future, await script(keys=keys, args=args))
            except Exception as exc:  # handed to the caller, who awaits it
                _fail(future, exc)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the round trip failed: every caller sees it
            for *_, future in batch:
                _fail(future, exc)
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):  # a restarted Redis forgot the script
                try:
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if isinstance(result, Exception):
                _fail(future, result)
            else:
                _settle(future, result)


class RecordError(Exception):
    """Redis refused one item of a group's script call (the others of the call stand)."""


class GroupCommit(Generic[Item, T]):
    """Group commit: items submitted while a write is in flight go out together in the next one.

    At most ``depth`` writes at a time. An item submitted while fewer are in flight starts a
    writer task (one per busy period, not one per item); a writer writes what is pending, at
    most ``cap`` items per write, then what was submitted meanwhile, until nothing is left.
    ``write`` answers one result per item, in order (an item's result may be an exception: only
    its submitter sees it). A failed write fails every item of it, and only those; the writer
    goes on with the next.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[T | Exception]]],
        cap: int,
        depth: int = 1,
    ) -> None:
        self._write = write
        self.cap = cap
        self.depth = depth
        self._pending: list[tuple[Item, asyncio.Future[T]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> T:
        """Write ``item`` with the next group; its result (or its exception)."""
        return await self._enqueue(item)

    async def submit_all(self, items: Sequence[Item]) -> list[T]:
        """Write ``items`` with the next group(s); their results in order (the first
        exception among them is raised)."""
        return list(await asyncio.gather(*(self._enqueue(item) for item in items)))

    def _enqueue(self, item: Item) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._writers) < self.depth:
            self._writers.add(asyncio.create_task(self._drain(), name="group-commit"))
        return future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.cap], self._pending[self.cap :]
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:  # handed to every submitter of this write
                    for _, future in batch:
                        _fail(future, exc)
                    continue
                except BaseException:  # cancelled: nobody may wait for a writer that is gone
                    for _, future in batch + self._pending:
                        future.cancel()
                    self._pending = []
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        _fail(future, result)
                    else:
                        _settle(future, result)
        finally:  # at once, not in a done callback: a submit right after must start a writer
            self._writers.discard(asyncio.current_task())


def group_results(
    rows: Sequence[Any], reply: type[R], build: Callable[[R], T]
) -> list[T | Exception]:
    """A group commit script's reply, one result per member in order: ``build`` of its map, or
    a ``RecordError`` for a member Redis refused (``GroupCommit`` hands it to that member only)."""
    return group_members([decode_map(row, reply) for row in rows], build)


def group_members(members: Sequence[R], build: Callable[[R], T]) -> list[T | Exception]:
    """``group_results`` of a reply already decoded (one Struct per member, in order)."""
    return [RecordError(m.error) if m.error is not None else build(m) for m in members]


_background: set[asyncio.Future[None]] = set()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
