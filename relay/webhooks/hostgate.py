"""Fair delivery inside one worker: a cap on attempts in flight per callback host, and a breaker.

A host is the callback's ``host:port`` (two receivers on one machine are two hosts). Before an
attempt the worker asks ``HostGate.admit(host)``:

* **Admitted**: the attempt runs; afterwards ``done(...)`` reports how it went.
* **Deferred** (``retry_in`` seconds): the attempt does not run now and takes no pool slot. The
  caller puts the delivery back into the due set for later without counting an attempt.

Two reasons defer an attempt:

* ``host_busy``: ``max_in_flight`` attempts to the host are already running. Deferred attempts
  are spread at the rate the host has been finishing attempts (``max_in_flight`` per recent
  attempt duration), so a black hole's backlog comes back about when slots free up instead of
  spinning through the pool.
* ``breaker_open``: ``threshold`` consecutive timeouts/connection failures opened the host's
  breaker for ``cooldown`` seconds. After it, exactly one attempt probes the host: an answer
  (any HTTP status) closes the breaker, another failure opens it again.

State is per process and in memory (each worker protects its own pool); a host with nothing in
flight and a closed breaker is forgotten. This module must never touch Redis, the network or the
clock of another process: it is pure bookkeeping over ``time.monotonic``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from relay.errors import CallbackRefused
from relay.webhooks.callbacks import validate_callback_url

DeferReason = Literal["host_busy", "breaker_open"]
Verdict = Literal["answered", "failed", "neutral"]
FAILURES: Final = frozenset({"timeout", "connect", "dns", "reset", "tls"})
"""Attempt error classes that count against a host's breaker (no HTTP answer came back)."""
MIN_DEFER: Final = 0.01
FIRST_GUESS: Final = 0.05  # the attempt duration assumed before a host finished any
MAX_DEFER: Final = 600.0
_EWMA: Final = 0.3


def attempt_verdict(status_code: int | None, error: str | None) -> Verdict:
    """How an attempt counts for its host: an HTTP answer, a connection failure, or neither."""
    if status_code is not None:
        return "answered"
    return "failed" if error in FAILURES else "neutral"


def host_key(url: str) -> str:
    """The host an attempt to ``url`` counts against (``host:port``; "" for an invalid URL)."""
    try:
        parsed = validate_callback_url(url)
    except CallbackRefused:
        return ""
    return f"{parsed.host}:{parsed.port}"


class Admission(msgspec.Struct, frozen=True):
    """The gate's answer: run now (``admitted``), or come back in ``retry_in`` seconds."""

    admitted: bool
    retry_in: float = 0.0
    reason: DeferReason | None = None
    probe: bool = False


@dataclass
class _Host:
    in_flight: int = 0
    failures: int = 0
    open_until: float = 0.0  # breaker open while now < open_until; 0: closed
    probing: bool = False
    duration: float = 0.0  # moving average of attempt durations, seconds
    spread_until: float = 0.0  # the latest time handed to a host_busy deferral


class HostGate:
    """Per-host in-flight cap and circuit breaker for one worker process."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        breaker_threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1 or breaker_threshold < 0 or cooldown <= 0:
            raise ValueError("max_in_flight >= 1, breaker_threshold >= 0, cooldown > 0")
        self.max_in_flight = max_in_flight
        self.threshold = breaker_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._hosts: dict[str, _Host] = {}

    def in_flight(self, host: str) -> int:
        """Attempts to ``host`` running now."""
        h = self._hosts.get(host)
        return h.in_flight if h else 0

    def is_open(self, host: str) -> bool:
        """Whether ``host``'s breaker is open or half-open (not closed)."""
        h = self._hosts.get(host)
        return bool(h and h.open_until)

    def admit(self, host: str) -> Admission:
        """Let an attempt to ``host`` start now, or say when to come back."""
        h = self._hosts.setdefault(host, _Host())
        now = self._clock()
        if h.open_until:
            if now < h.open_until or h.probing:
                wait = max(h.open_until - now, 0.0) + self.cooldown * random.uniform(0.0, 0.5)
                return _defer(wait or self.cooldown, "breaker_open")
            h.probing = True
            h.in_flight += 1
            return Admission(admitted=True, probe=True)
        if h.in_flight >= self.max_in_flight:
            return _defer(self._spread(h, now), "host_busy")
        h.in_flight += 1
        return Admission(admitted=True)

    def _spread(self, h: _Host, now: float) -> float:
        """The next free turn for a deferred attempt: one more ``duration / max_in_flight``."""
        per_turn = max(h.duration or FIRST_GUESS, 0.001) / self.max_in_flight
        h.spread_until = max(h.spread_until, now) + per_turn
        return min(h.spread_until - now + per_turn * random.random(), MAX_DEFER)

    def done(self, host: str, admission: Admission, verdict: Verdict, duration: float) -> None:
        """Report an admitted attempt's end: ``verdict`` from ``attempt_verdict``."""
        h = self._hosts.get(host)
        if h is None or not admission.admitted:
            return
        h.in_flight = max(0, h.in_flight - 1)
        h.duration = duration if not h.duration else h.duration + _EWMA * (duration - h.duration)
        if admission.probe:
            h.probing = False
        if verdict == "answered":
            h.failures, h.open_until = 0, 0.0
        elif verdict == "failed":
            h.failures += 1
            tripped = self.threshold and h.failures >= self.threshold and not h.open_until
            if admission.probe or tripped:
                h.open_until = self._clock() + self.cooldown
        idle = not h.in_flight and not h.failures and not h.open_until
        if idle and h.spread_until <= self._clock():
            del self._hosts[host]


def _defer(seconds: float, reason: DeferReason) -> Admission:
    return Admission(admitted=False, retry_in=max(seconds, MIN_DEFER), reason=reason)
