"""Loopback TCP listeners: one records every connection (SSRF tests expect none), one answers
scripted raw HTTP (for edges a real server will not produce)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def recording_listener(host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[str]]]:
    """Listen on ``host``; yields (port, peers seen); closes every connection at once."""
    seen: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    async with serving(on_connect, host) as port:
        yield port, seen


@contextlib.asynccontextmanager
async def scripted_http_listener(
    answers: dict[str, bytes], host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, list[str]]]:
    """A keep-alive HTTP/1.1 listener that sends ``answers[path]`` (raw bytes) for each request.

    Yields (port, paths requested, in order). A path without an answer, or an empty answer,
    closes the connection without a reply. Request bodies are not supported (GET only).
    """
    requested: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                path = head.split(b" ", 2)[1].decode()
                requested.append(path)
                answer = answers.get(path, b"")
                if not answer:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: nothing left to answer
        finally:
            writer.close()

    async with serving(on_connect, host) as port:
        yield port, requested


@contextlib.asynccontextmanager
async def serving(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], host: str
) -> AsyncIterator[int]:
    """Serve ``on_connect`` on a free port of ``host``; yields the port; closes on exit."""
    server = await asyncio.start_server(on_connect, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
