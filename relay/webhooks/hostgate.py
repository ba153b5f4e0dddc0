"""Fair delivery inside one worker: a cap on attempts in flight per callback host, and a breaker.

A host is the callback's ``host:port`` (two receivers on one machine are two hosts). Before an
attempt the worker asks ``HostGate.admit(host, item)``:

* **Admitted**: the attempt runs; when its POST ends (before the attempt is recorded) ``done(...)``
  reports how it went, and may hand back a parked item that takes over the turn (and pump slot).
* **Parked**: the host is at its cap; the gate keeps the item (at most ``max_in_flight`` per
  host, so each waits for about one turn) and the caller returns, freeing its pump slot.
* **Deferred** (``retry_in`` seconds): the attempt does not run now and takes no pool slot. The
  caller puts the delivery back into the due set for later without counting an attempt.

Two reasons defer an attempt:

* ``host_busy``: the host is at its cap and its parking is full. Deferred attempts are spread at
  the rate the host has been finishing attempts (``max_in_flight`` per recent attempt
  duration), so a black hole's backlog comes back about when turns free up instead of spinning
  through the pool.
* ``breaker_open``: ``threshold`` consecutive timeouts/connection failures opened the host's
  breaker for ``cooldown`` seconds. After it, exactly one attempt probes the host: an answer
  (any HTTP status) closes the breaker, another failure opens it again.

A turn is a POST: it starts at ``admit`` and ends at ``done``, which the caller reports as soon
as the response (or the error) is in, not after the attempt's record reaches Redis. So the cap
counts POSTs in flight, the durations kept are POST durations, and a host's pace is
``max_in_flight`` turns per duration, which is about how long a turn lasts.

The worker's own lateness is not the host's. A starved worker reads its answers late, and one
busy with its own work (a claim's burst of admissions) reads none until its next poll. So a
POST's duration counts without the time the worker waited for a CPU core meanwhile (``waited``,
a counter the caller injects: ``relay.cpuwait`` in the worker), and the time since a host's last
turn ended counts only the time the worker was listening: its clock less both its waits for a
core and its own time on one (``worked``: the thread's CPU time).

State is per process and in memory (each worker protects its own pool); a host with nothing in
flight, nothing parked and a closed breaker is forgotten. Parked items are leased deliveries: a
stopping worker hands them back (``drain``); a killed one loses only their lease time.

This module must never touch Redis or the network: it is pure bookkeeping over the clocks it is
given.
"""

from __future__ import annotations

import functools
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

import msgspec

from relay.errors import CallbackRefused
from relay.webhooks.callbacks import validate_callback_url

T = TypeVar("T")
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


@functools.lru_cache(maxsize=4096)
def host_key(url: str) -> str:
    """The host an attempt to ``url`` counts against (``host:port``; "" for an invalid URL)."""
    try:
        parsed = validate_callback_url(url)
    except CallbackRefused:
        return ""
    return f"{parsed.host}:{parsed.port}"


class Admission(msgspec.Struct, frozen=True):
    """The gate's answer: run now, parked (the gate keeps the item), or come back later."""

    admitted: bool
    parked: bool = False
    retry_in: float = 0.0  # seconds, when neither admitted nor parked
    reason: DeferReason | None = None
    probe: bool = False


ADMITTED: Final = Admission(admitted=True)
PARKED: Final = Admission(admitted=False, parked=True, reason="host_busy")


@dataclass
class _Host(Generic[T]):
    in_flight: int = 0
    failures: int = 0
    open_until: float = 0.0  # breaker open while now < open_until; 0: closed
    probing: bool = False
    duration: float = 0.0  # moving average of POST durations (turns), seconds
    spread_until: float = 0.0  # the latest time handed to a host_busy deferral
    # The last time a turn (a POST) to the host ended, or one started with nothing in flight (time
    # with nothing in flight, e.g. while the relay's own Redis was away, says nothing of its pace);
    # on the listening clock (the worker's waits for a core and its own CPU time taken off)
    progress_at: float = 0.0
    parked: deque[tuple[float, T]] = field(default_factory=deque)  # (parked at, item)


class HostGate(Generic[T]):
    """Per-host in-flight cap and circuit breaker for one worker process (items of type T)."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        breaker_threshold: int,
        cooldown: float,
        max_park: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        waited: Callable[[], float] = lambda: 0.0,
        worked: Callable[[], float] = lambda: 0.0,
    ) -> None:
        if max_in_flight < 1 or breaker_threshold < 0 or cooldown <= 0 or max_park <= 0:
            raise ValueError("max_in_flight >= 1, breaker_threshold >= 0, cooldown/max_park > 0")
        self.max_in_flight = max_in_flight
        self.max_park = max_park
        self.threshold = breaker_threshold
        self.cooldown = cooldown
        self._clock = clock
        self.waited = waited  # seconds this worker has waited for a core so far (a counter)
        self._worked = worked  # seconds this worker has run on a core so far (a counter)
        self._hosts: dict[str, _Host[T]] = {}

    def in_flight(self, host: str) -> int:
        """Attempts to ``host`` running now."""
        h = self._hosts.get(host)
        return h.in_flight if h else 0

    def is_open(self, host: str) -> bool:
        """Whether ``host``'s breaker is open or half-open (not closed)."""
        h = self._hosts.get(host)
        return bool(h and h.open_until)

    def admit(self, host: str, item: T) -> Admission:
        """Let an attempt to ``host`` start now, park ``item`` for the next free turn, or defer.

        Items are parked while their expected wait (the queue ahead at the host's pace) stays
        within half of ``max_park``, at least one round (``max_in_flight`` items; only one round
        while no attempt to the host has ended yet). A parked item
        waits for a running attempt's POST to end and takes over its turn and pump slot (``done``
        returns it), so it holds no slot meanwhile. One parked longer than ``max_park`` is
        dropped instead of run: its lease (longer than ``max_park``) brings it back.
        """
        now = self._clock()
        h = self._hosts.get(host)
        if h is None:
            h = self._hosts[host] = _Host(progress_at=self._listening(now))
        if h.open_until:
            if now < h.open_until or h.probing:
                wait = max(h.open_until - now, 0.0) + self.cooldown * random.uniform(0.0, 0.5)
                return _defer(wait or self.cooldown, "breaker_open")
            h.probing = True
            self._start(h, now)
            return Admission(admitted=True, probe=True)
        if h.in_flight < self.max_in_flight:
            self._start(h, now)
            return ADMITTED
        # One round until the host's pace is known; then half of max_park's worth of queue.
        duration = self._duration(h, self._listening(now))
        rounds = self.max_park / 2 / duration if h.duration else 1.0
        if len(h.parked) < max(self.max_in_flight, int(rounds * self.max_in_flight)):
            h.parked.append((now, item))
            return PARKED
        return _defer(self._spread(h, now, duration), "host_busy")

    def _listening(self, now: float) -> float:
        """``now`` on the listening clock: less the worker's waits for a core and time on one."""
        return now - self.waited() - self._worked()

    def _start(self, h: _Host[T], now: float) -> None:
        if not h.in_flight:  # the host sat idle until now: its pace counts from this attempt on
            h.progress_at = self._listening(now)
        h.in_flight += 1

    @staticmethod
    def _duration(h: _Host[T], listening: float) -> float:
        """The host's turn duration (a POST's): the recent average, but at least the time since a
        turn last ended while others ran (a host that has not answered anything lately is slower
        than it was), counted on the listening clock (``listening`` is now on it).
        """
        return max(h.duration or FIRST_GUESS, listening - h.progress_at, 0.001)

    def _spread(self, h: _Host[T], now: float, duration: float) -> float:
        """The next free turn for a deferred attempt: one more ``duration / max_in_flight``."""
        per_turn = duration / self.max_in_flight
        h.spread_until = max(h.spread_until, now + duration) + per_turn
        return min(h.spread_until - now + per_turn * random.random(), MAX_DEFER)

    def done(
        self,
        host: str,
        admission: Admission,
        verdict: Verdict,
        duration: float,
        core_wait: float = 0.0,
    ) -> T | None:
        """Report the end of an admitted attempt's POST (``duration`` seconds, of which the worker
        spent ``core_wait`` waiting for a core: the difference of two ``waited()``); returns a
        parked item that takes over its turn.

        Called when the answer (or the error) is in, before the attempt is recorded: the record's
        round trip holds no turn. The caller runs the returned item next (as admitted) and
        reports it here in turn.
        """
        h = self._hosts.get(host)
        if h is None or not admission.admitted:
            return None
        duration = max(duration - core_wait, min(duration, 0.001))  # never 0: that is "unknown"
        h.duration = duration if not h.duration else h.duration + _EWMA * (duration - h.duration)
        h.progress_at = self._listening(self._clock())
        if admission.probe:
            h.probing = False
        if verdict == "answered":
            h.failures, h.open_until = 0, 0.0
        elif verdict == "failed":
            h.failures += 1
            tripped = self.threshold and h.failures >= self.threshold and not h.open_until
            if admission.probe or tripped:
                h.open_until = self._clock() + self.cooldown
        now = self._clock()
        while h.parked and not h.open_until:
            parked_at, item = h.parked.popleft()
            if now - parked_at <= self.max_park:
                return item  # the turn passes on: in_flight stays as it is
        h.in_flight = max(0, h.in_flight - 1)
        idle = not h.in_flight and not h.failures and not h.open_until and not h.parked
        if idle and h.spread_until <= self._clock():
            del self._hosts[host]
        return None

    def evict(self, host: str) -> list[T]:
        """Parked items of a host whose breaker opened (the caller defers them)."""
        h = self._hosts.get(host)
        if h is None or not h.open_until or not h.parked:
            return []
        items = [item for _, item in h.parked]
        h.parked.clear()
        return items

    def drain(self) -> list[T]:
        """Every parked item (a stopping worker hands them back)."""
        items = [item for h in self._hosts.values() for _, item in h.parked]
        for h in self._hosts.values():
            h.parked.clear()
        return items


def _defer(seconds: float, reason: DeferReason) -> Admission:
    return Admission(admitted=False, retry_in=max(seconds, MIN_DEFER), reason=reason)
