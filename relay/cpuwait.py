"""How long this thread has waited for a CPU core so far: a counter in seconds.

Linux keeps, per thread, the time it spent runnable but not running (the second field of
``/proc/thread-self/schedstat``, the run queue delay). The delivery worker's ``HostGate`` takes
the time the worker waited for a core off the time it counts against a callback host: a worker
starved by its neighbours must not read its own lateness as the host being slow.

A read is a system call: one taken within ``FRESH`` seconds of the clock is reused, so a burst of
calls in one loop pass costs one read (off by less than ``FRESH``). Where the file is missing (not
Linux, or no schedstats), the counter stays at 0 and the gate counts wall time as before.

This module must never raise from ``waited`` (a failed read keeps the last count) nor write
anything.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Final

FRESH: Final = 0.001
_PATHS: Final = ("/proc/thread-self/schedstat", "/proc/self/schedstat")


class CoreWait:
    """``waited()``: seconds the thread that made it (the event loop's) waited for a core."""

    def __init__(self) -> None:
        self._fd = -1
        for path in _PATHS:
            try:
                self._fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            weakref.finalize(self, os.close, self._fd)  # the file lives as long as this
            break
        self._read_at = -1.0
        self._seconds = 0.0

    def waited(self) -> float:
        """The run queue delay so far, in seconds (0 where unknown)."""
        if self._fd < 0:
            return 0.0
        now = time.monotonic()
        if now - self._read_at >= FRESH:
            try:
                self._seconds = int(os.pread(self._fd, 96, 0).split()[1]) / 1e9
            except (OSError, ValueError, IndexError):
                return self._seconds
            self._read_at = now
        return self._seconds
