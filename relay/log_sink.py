"""The worker's JSON log lines written once per event-loop pass (``LineSink``), not one write each.

A line logged on a thread whose event loop is running waits in memory until the end of that
loop pass (one ``call_soon`` per pass), then goes out with the other lines of the pass. Lines keep
their order, and every write holds whole lines only, at most ``CHUNK`` bytes (a pipe write of
up to PIPE_BUF bytes is atomic on Linux, so lines of processes sharing a pipe never interleave
mid-line); a longer line is one write of its own, as before. A line is written at once, together
with every line before it, when no loop runs on the calling thread, when it is a warning or
worse (``urgent``), or when ``MAX_PENDING`` bytes wait. ``flush`` writes what waits; it runs
before every foreign (stdlib) record, at interpreter exit and at the end of the worker's run, so
a graceful stop loses nothing. Only a process killed outright loses the lines of its last pass.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from typing import Any, BinaryIO, Final

CHUNK: Final = 4096  # bytes per write at most (PIPE_BUF on Linux), unless one line is longer
MAX_PENDING: Final = 64 * 1024  # bytes waiting for the end of a pass before they go at once
URGENT: Final = frozenset({"warning", "warn", "error", "err", "exception", "critical", "fatal"})


class LineSink:
    """Whole lines to ``out``: batched per event-loop pass, in order, never split."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lines: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()
        # The loop that owes us a flush: a loop closed before its pass ended owes nothing more,
        # so a line from another loop schedules its own.
        self._owed_by: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def add(self, line: bytes, urgent: bool = False) -> None:
        """Queue ``line`` (ending in a newline); written at the end of this pass or now."""
        loop = asyncio._get_running_loop()
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if urgent or loop is None or self._size >= MAX_PENDING:
                self._write_locked()
            elif self._owed_by is not loop:
                self._owed_by = loop
                loop.call_soon(self._end_of_pass)

    def flush(self) -> None:
        """Write every waiting line now."""
        with self._lock:
            self._write_locked()

    def _end_of_pass(self) -> None:
        with self._lock:
            self._owed_by = None
            with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere to write
                self._write_locked()

    def _write_locked(self) -> None:
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > CHUNK:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        # One write syscall per chunk: a buffered ``out`` must not merge two chunks.
        self._out.write(data)
        self._out.flush()


class SinkLogger:
    """structlog's logger for the sink: ``info`` and below wait for the pass, warnings go now."""

    def __init__(self, name: str, sink: LineSink) -> None:
        self.name = name
        self._sink = sink

    def msg(self, message: bytes) -> None:
        self._sink.add(message + b"\n")

    def urgent(self, message: bytes) -> None:
        self._sink.add(message + b"\n", urgent=True)

    log = debug = info = msg
    warn = warning = err = error = exception = critical = fatal = failure = urgent

    def __repr__(self) -> str:
        return f"<SinkLogger(name={self.name!r})>"


def flush_before(sink: LineSink, emit: Any) -> Any:
    """``emit`` (a handler's) that first writes the sink's waiting lines, keeping their order."""

    def emit_after_flush(record: Any) -> None:
        sink.flush()
        emit(record)

    return emit_after_flush
