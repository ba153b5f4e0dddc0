"""A loopback TCP listener that records every connection it accepts (SSRF tests expect none)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def recording_listener(host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[str]]]:
    """Listen on ``host``; yields (port, peers seen); closes every connection at once."""
    seen: list[str] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()
