"""Fairness: a healthy receiver's delivery rate next to a black hole, against it alone.

Relay side ("black hole present"), per repetition: with no worker running, 500 subscriptions to
the healthy receiver and 500 to a black hole (a listener in the bench process that accepts
connections, reads, and never answers) are made due at once, as in the delivery scenario; then
one worker starts and the healthy receiver's rate is counted from its first to its last verified
receipt. Baseline ("black hole absent"), interleaved: the same 500 healthy subscriptions alone,
the same worker settings. In the last repetition the bench also waits until every black-hole
subscription has ended ``exhausted`` and counts their attempts (each must have exactly its retry
budget: deferrals by the per-host cap are not attempts).

Worker settings: defaults for concurrency (64) and RELAY_MAX_IN_FLIGHT_PER_HOST (8), a short
RELAY_DELIVERY_TIMEOUT (500 ms) and retry schedule (one retry after 100 ms) so the black hole's
1,000 attempts end within the run, and the breaker off (RELAY_BREAKER_THRESHOLD=0): with it on,
a black hole is probed once per cool-down and its subscriptions wait (by design) far longer than
a bench can; the breaker is covered by tests/test_fair_delivery.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from bench.common import Bench, Row
from bench.scenarios.delivery import make_due, rate_from, wait_receipts
from relay.embedded_redis import free_port
from relay.model import EventType, SubscriptionDoc, SubState
from relay.store import keys
from relay.webhooks.signing import webhook_id

WORKER_ENV = {
    "RELAY_DELIVERY_TIMEOUT": "500ms",
    "RELAY_RETRY_SCHEDULE": "100ms",
    "RELAY_BREAKER_THRESHOLD": "0",
}
ATTEMPTS = 2


class BlackHole:
    """Accepts connections and never answers; counts connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def hole_outcome(b: Bench, docs: list[SubscriptionDoc], timeout: float) -> str:
    """Wait until every black-hole subscription is final; describe states and attempts."""
    deadline = time.monotonic() + timeout
    while True:
        async with b.redis.pipeline(transaction=False) as pipe:
            for d in docs:
                pipe.hget(keys.sub(d.id), keys.SubField.STATE.value)
                pipe.llen(keys.attempts(d.id))
            values = await pipe.execute()
        states = Counter(v.decode() if v else None for v in values[0::2])
        if states.get(SubState.DELIVERING, 0) == 0 or time.monotonic() > deadline:
            attempts = Counter(int(n) for n in values[1::2])
            return f"black hole: states {dict(states)}, attempts per subscription {dict(attempts)}"
        await asyncio.sleep(0.5)


async def deferrals(b: Bench, port: int) -> str:
    """The worker's deferral counters when the last healthy delivery arrived."""
    found = await b.worker_deferrals(port)
    return "deferrals by then " + (", ".join(f"{k}: {v}" for k, v in found.items()) or "none")


async def rep(
    b: Bench, n: int, tag: str, callback: str, hole: str | None, wait_hole: bool
) -> tuple[float, str]:
    """One repetition; returns (healthy rate, note)."""
    await b.flush()
    await b.receiver_reset()
    docs = await b.register_many([f"fair-{tag}-{i}" for i in range(n)], callback)
    hole_docs = await b.register_many([f"hole-{tag}-{i}" for i in range(n)], hole) if hole else []
    await b.redis.delete(keys.DUE_POLL)  # no worker runs yet; nobody must poll these runs
    await make_due(b, [*docs, *hole_docs])
    ids = [webhook_id(d.id, EventType.COMPLETED) for d in docs]
    port = free_port()
    worker = b.fleet.worker(**WORKER_ENV, RELAY_WORKER_METRICS_PORT=str(port))
    note = ""
    try:
        got = await wait_receipts(b, ids, timeout=60 + n / 20)
        note = await deferrals(b, port)
        if wait_hole and hole_docs:
            note += "; " + await hole_outcome(b, hole_docs, timeout=300)
    finally:
        b.fleet.stop_child(worker)
    if len(got) < n:
        b.notes.append(f"fairness {tag}: {len(got)}/{n} healthy deliveries received")
    return rate_from(got), note


async def run(b: Bench) -> list[Row]:
    """Warm-up, then interleaved repetitions: black hole present, black hole absent."""
    n = 100 if b.smoke else 500
    reps = 1 if b.smoke else 5
    callback = b.fleet.receiver_root + "/hook"
    black_hole = BlackHole()
    hole = await black_hole.start()
    rates: dict[str, list[float]] = {"relay": [], "baseline": []}
    notes: list[str] = []
    try:
        if not b.smoke:
            await rep(b, n, "warm", callback, None, False)
        for i in range(reps):
            last = i == reps - 1
            rate, note = await rep(b, n, f"hole{i}", callback, hole, last)
            rates["relay"].append(rate)
            notes += [note] if last else []
            b.log(f"fairness with black hole: {rate:,.0f}/s {note}")
            rate, note = await rep(b, n, f"alone{i}", callback, None, False)
            rates["baseline"].append(rate)
            b.log(f"fairness black hole absent: {rate:,.0f}/s {note}")
    finally:
        black_hole.close()
    await b.flush()
    return [
        Row(
            "fairness",
            f"healthy deliveries/s next to a black hole holding {n} (vs. alone)",
            "deliveries/s",
            rates["relay"],
            rates["baseline"],
            "ratio >= 0.8",
            None,
            note=(
                f"{n} healthy + {n} black-hole subscriptions, one worker, concurrency 64, "
                f"8 per host, timeout 500 ms, 2 attempts, breaker off; black hole connections: "
                f"{black_hole.accepted}; " + "; ".join(notes)
            ),
            ratio_min=0.8,
        )
    ]
