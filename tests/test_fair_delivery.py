"""Fair delivery: the per-host cap, the breaker, async DNS, and a black hole next to a healthy host.

The gate's bookkeeping is checked with a hand-moved clock; DNS over the real sender and through a
worker process (its /metrics counts the attempts); the black hole end to end with a worker in the
test's loop: a listener that accepts and never answers holds deliveries next to a healthy
receiver. The healthy ones all arrive, the black hole's end ``exhausted`` with exactly their retry
budget of attempts (deferrals are not attempts), and the black hole never sees more connections
at once than the per-host cap. A host's turn is its POST: while the relay's Redis takes no writes
(no attempt can be recorded), the turns of answered attempts still pass to the parked ones,
slot and all, and polls and attempts waiting for their record leave their request slots to
others.
No timing is asserted.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
import redis
from aiohttp import web
from litestar.testing import AsyncTestClient

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle, RunScript
from relay.model import ATTEMPT_DECODER
from relay.store import keys
from relay.webhooks.allowlist import CallbackPolicy
from relay.webhooks.callbacks import IPAddress, dns_lookup
from relay.webhooks.hostgate import Admission, HostGate, attempt_verdict, host_key
from relay.webhooks.sender import WebhookSender
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import wait_until
from tests.support.reliability import register_many, state_counts
from tests.support.workers import StartInprocWorker, StartWorker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, cap: int = 2, threshold: int = 3, park: float = 0.1) -> HostGate[str]:
    return HostGate(
        max_in_flight=cap, breaker_threshold=threshold, cooldown=10, max_park=park, clock=clock
    )


def test_the_cap_parks_one_round_then_defers_spread_at_the_hosts_pace() -> None:
    clock = Clock()
    g = gate(clock)
    first, second = g.admit("a:80", "1"), g.admit("a:80", "2")
    assert first.admitted and second.admitted
    assert [g.admit("a:80", x).parked for x in ("3", "4")] == [True, True]
    early = [g.admit("a:80", "x") for _ in range(4)]
    assert all(not (w.admitted or w.parked) and w.reason == "host_busy" for w in early)
    assert max(w.retry_in for w in early) < 1  # nothing known yet: a short first guess
    # A finished attempt hands its turn to a parked item, in order; the cap never grows.
    assert g.done("a:80", first, "failed", 1.0) == "3"
    assert g.done("a:80", second, "failed", 1.0) == "4"
    assert g.in_flight("a:80") == 2
    assert g.admit("b:80", "b").admitted  # another host is not affected
    clock.now += 1
    assert [g.admit("a:80", x).parked for x in ("5", "6")] == [True, True]
    waits = [g.admit("a:80", "x") for _ in range(6)]
    # Spread at the host's pace (2 per 1 s attempt): later ones wait longer.
    assert waits[-1].retry_in > waits[0].retry_in + 2
    assert g.done("a:80", first, "answered", 0.01) == "5"
    assert sorted(g.drain()) == ["6"]
    assert g.done("a:80", first, "answered", 0.01) is None
    assert g.in_flight("a:80") == 1


def test_a_host_that_sat_idle_is_not_taken_for_slow() -> None:
    # Nothing was in flight to the host for 30 s (the relay's Redis was away, say): that says
    # nothing of its pace, so the backlog that comes back parks and spreads at its 0.1 s pace.
    clock = Clock()
    g = gate(clock, cap=2, park=4.0)
    first, second = g.admit("f:80", "1"), g.admit("f:80", "2")
    g.done("f:80", first, "answered", 0.1)
    g.done("f:80", second, "failed", 0.1)  # one failure keeps the host known
    assert g.in_flight("f:80") == 0
    clock.now += 30
    assert [g.admit("f:80", r).admitted for r in ("r1", "r2")] == [True, True]
    answers = [g.admit("f:80", str(i)) for i in range(60)]
    assert [a.parked for a in answers].count(True) == 40  # 2 s of queue at 0.1 s per attempt
    deferred = [a.retry_in for a in answers if not a.parked]
    assert len(deferred) == 20 and max(deferred) < 2  # spread 0.05 s apart, not 15 s


class Worker:
    """A worker's own counters, in seconds: waiting for a core, and running on one."""

    def __init__(self) -> None:
        self.waited = 0.0
        self.worked = 0.0


def timed_gate(clock: Clock, worker: Worker, cap: int = 2, park: float = 4.0) -> HostGate[str]:
    return HostGate(
        max_in_flight=cap,
        breaker_threshold=3,
        cooldown=10,
        max_park=park,
        clock=clock,
        waited=lambda: worker.waited,
        worked=lambda: worker.worked,
    )


def a_fast_hosts_backlog(clock: Clock, g: HostGate[str]) -> Admission:
    """A host answering in 2 ms with 1,000 parked (2 s of queue: 2,000 fit); one POST open."""
    first, second = g.admit("f:80", "r1"), g.admit("f:80", "r2")
    clock.now += 0.002
    g.done("f:80", first, "answered", 0.002)
    assert g.admit("f:80", "r3").admitted
    assert all(g.admit("f:80", str(i)).parked for i in range(1000))
    return second


def test_a_fast_host_is_not_taken_for_slow_when_its_worker_was_late() -> None:
    # The worker waits 40 ms for a core, then runs its own work for 10 ms (a claim's admissions)
    # before it reads the answers that came in meanwhile: 50 ms without a turn ending, all of it
    # the worker's. The backlog still parks at the host's 2 ms pace (not 50 ms: 160 would fit),
    # and the answer read late (42 ms by the sender's timer, 40 of them waiting) keeps that pace.
    clock, worker = Clock(), Worker()
    g = timed_gate(clock, worker)
    running = a_fast_hosts_backlog(clock, g)
    clock.now += 0.040
    worker.waited += 0.040
    clock.now += 0.010
    worker.worked += 0.010
    assert all(g.admit("f:80", f"late{i}").parked for i in range(200))
    assert g.done("f:80", running, "answered", 0.042, core_wait=0.040) == "0"
    assert all(g.admit("f:80", f"later{i}").parked for i in range(200))


def test_a_host_that_stops_answering_is_still_taken_for_slow() -> None:
    # The same backlog, but for 50 ms the worker listened and no turn ended (and for 50 ms more it
    # waited for a core or ran its own work: not counted). At 50 ms a turn, 160 fit: new ones are
    # deferred at that pace (the first a turn's 50 ms away at least), not parked.
    clock, worker = Clock(), Worker()
    g = timed_gate(clock, worker)
    a_fast_hosts_backlog(clock, g)
    clock.now += 0.100
    worker.waited += 0.030
    worker.worked += 0.020
    silent = [g.admit("f:80", f"s{i}") for i in range(4)]
    assert all(not (a.admitted or a.parked) and a.reason == "host_busy" for a in silent)
    assert min(a.retry_in for a in silent) > 0.05


def test_the_breaker_opens_after_consecutive_failures_then_probes_once() -> None:
    clock = Clock()
    g = gate(clock, cap=8)
    for _ in range(2):
        g.done("h:80", g.admit("h:80", "x"), "failed", 1.0)
    g.done("h:80", g.admit("h:80", "x"), "answered", 0.1)  # an answer resets the count
    for _ in range(3):
        g.done("h:80", g.admit("h:80", "x"), "failed", 1.0)
    assert g.is_open("h:80")
    held = g.admit("h:80", "x")
    assert (held.admitted, held.parked, held.reason) == (False, False, "breaker_open")
    assert 10 <= held.retry_in <= 15
    clock.now += 10
    probe = g.admit("h:80", "x")
    assert probe.admitted and probe.probe
    assert g.admit("h:80", "x").reason == "breaker_open"  # one probe at a time
    g.done("h:80", probe, "failed", 1.0)  # the probe failed: open again
    assert not g.admit("h:80", "x").admitted
    clock.now += 10
    probe = g.admit("h:80", "x")
    g.done("h:80", probe, "answered", 0.1)
    assert not g.is_open("h:80")
    assert g.admit("h:80", "x").admitted


def test_parking_grows_with_a_fast_host_and_never_outlives_max_park() -> None:
    clock = Clock()
    g = gate(clock, cap=2, park=4.0)
    running = [g.admit("f:80", "r1"), g.admit("f:80", "r2")]
    g.done("f:80", running[0], "answered", 0.1)  # 0.1 s per attempt: 2 s of queue = 40 items
    assert g.admit("f:80", "r3").admitted  # the free turn
    parked = [g.admit("f:80", str(i)).parked for i in range(60)]
    assert parked.count(True) == 40
    clock.now += 5  # longer than max_park: their leases will bring them back instead
    assert g.done("f:80", running[1], "answered", 0.1) is None
    assert g.in_flight("f:80") == 1


def test_parked_items_are_evicted_when_the_breaker_opens() -> None:
    g = gate(Clock(), cap=1, threshold=1)
    running = g.admit("h:80", "a")
    assert g.admit("h:80", "b").parked
    assert g.done("h:80", running, "failed", 1.0) is None  # opened: no hand-over
    assert g.evict("h:80") == ["b"]
    assert g.in_flight("h:80") == 0


def test_what_counts_against_a_host() -> None:
    assert attempt_verdict(500, "http_500") == "answered"
    assert attempt_verdict(None, "timeout") == "failed"
    assert attempt_verdict(None, "dns") == "failed"
    assert attempt_verdict(None, "ssrf_refused") == "neutral"
    assert host_key("http://Hooks.Example.com/x") == "hooks.example.com:80"
    assert host_key("https://127.0.0.1:8443/") == "127.0.0.1:8443"
    assert host_key("http://1.1/") == ""


# ---- DNS ----------------------------------------------------------------------------------------


async def test_c_ares_lookup_resolves_hosts_file_names() -> None:
    assert ipaddress.ip_address("127.0.0.1") in await dns_lookup("localhost", 80)


async def test_a_hanging_domain_does_not_hold_up_other_deliveries(receiver: ReceiverHandle) -> None:
    async def lookup(host: str, port: int) -> Sequence[IPAddress]:
        if host == "slow.test":
            await asyncio.sleep(30)
        return [ipaddress.ip_address("127.0.0.1")]

    policy = CallbackPolicy(allow_private=True)
    async with WebhookSender(timeout=2, policy=policy, lookup=lookup, dns_timeout=0.3) as sender:
        slow = [
            asyncio.ensure_future(sender.send(f"http://slow.test:{receiver.port}/ok", b"{}", {}))
            for _ in range(8)
        ]
        fast = [
            await sender.send(f"http://fast{i}.test:{receiver.port}/ok", b"{}", {})
            for i in range(20)
        ]
        assert all(not s.done() for s in slow)  # still resolving while the others delivered
        assert [r.outcome for r in fast] == ["delivered"] * 20
        assert {(r.outcome, r.error) for r in await asyncio.gather(*slow)} == {("retry", "dns")}


async def test_a_name_that_stops_resolving_spends_attempts_labelled_dns(
    api: AsyncTestClient[object],
    fake_intuned: FakeIntunedHandle,
    start_worker: StartWorker,
    receiver: ReceiverHandle,
    redis_sync: redis.Redis,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    [sid] = await register_many(api, [(run_id, receiver.url("/ok"))])
    # Resolved at registration; by delivery time the name is gone (.invalid never resolves).
    redis_sync.hset(
        keys.sub(sid), keys.SubField.CALLBACK.value, f"http://relay-test.invalid:{receiver.port}/ok"
    )
    port = free_port()
    start_worker(RELAY_RETRY_SCHEDULE="50ms", RELAY_WORKER_METRICS_PORT=str(port))
    await wait_until(lambda: state_counts(redis_sync, [sid]) == {"exhausted": 1}, timeout=20)
    log = [ATTEMPT_DECODER.decode(a) for a in redis_sync.lrange(keys.attempts(sid), 0, -1)]
    assert [(a.error, a.status_code) for a in log] == [("dns", None), ("dns", None)]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b'relay_deliveries_total{outcome="dns"} 1.0' in metrics
    assert b'relay_deliveries_total{outcome="exhausted"} 1.0' in metrics
    assert receiver.requests == []


# ---- a black hole next to a healthy receiver ---------------------------------------------------


class BlackHole:
    """Accepts connections, reads, never answers; records how many were open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.accepted = 0
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        self.open += 1
        self.accepted += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while await reader.read(65536):
                pass
        finally:
            self.open -= 1
            self.writers.discard(writer)
            writer.close()

    async def close_all(self) -> None:
        """Close the connections still held (the server's close leaves them open on 3.11)."""
        writers = list(self.writers)
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    server = await asyncio.start_server(hole.on_connect, "127.0.0.1", 0)
    hole.port = server.sockets[0].getsockname()[1]
    try:
        yield hole
    finally:
        server.close()
        await hole.close_all()
        await server.wait_closed()


async def test_a_black_hole_neither_starves_a_healthy_host_nor_loses_its_deliveries(
    api: AsyncTestClient[object],
    fake_intuned: FakeIntunedHandle,
    start_inproc_worker: StartInprocWorker,
    receiver: ReceiverHandle,
    black_hole: BlackHole,
    redis_sync: redis.Redis,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(outcome="completed", result=1))
    hole = [(run_id, f"http://127.0.0.1:{black_hole.port}/hook/{i}") for i in range(12)]
    good = [(run_id, receiver.url(f"/ok/{i}")) for i in range(40)]
    hole_ids = await register_many(api, hole, concurrency=8)
    good_ids = await register_many(api, good, concurrency=8)
    await start_inproc_worker(
        RELAY_WORKER_CONCURRENCY="8",
        RELAY_MAX_IN_FLIGHT_PER_HOST="4",
        RELAY_DELIVERY_TIMEOUT="400ms",
        RELAY_RETRY_SCHEDULE="50ms",
        RELAY_BREAKER_THRESHOLD="3",
        RELAY_BREAKER_COOLDOWN="100ms",
    )
    await wait_until(lambda: state_counts(redis_sync, good_ids) == {"delivered": 40}, timeout=30)
    await wait_until(lambda: state_counts(redis_sync, hole_ids) == {"exhausted": 12}, timeout=60)
    for sid in hole_ids:
        log = [ATTEMPT_DECODER.decode(a) for a in redis_sync.lrange(keys.attempts(sid), 0, -1)]
        assert [a.error for a in log] == ["timeout", "timeout"], sid  # deferrals are no attempts
    assert black_hole.accepted == 24
    assert 1 <= black_hole.most_open <= 4
    assert len({r.path for r in receiver.requests}) == 40


# ---- a host's turn is its POST -----------------------------------------------------------------


class Waves:
    """A loopback receiver that holds every request (whose path holds ``held``) until the test
    lets the open ones go (or answers at once once ``passing``); records how many were open at
    once."""

    def __init__(self) -> None:
        self.held = "/"
        self.open = 0
        self.most_open = 0
        self.answered = 0
        self.passing = False
        self.port = 0
        self._go = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.held not in request.path:
            return web.Response(text="not held")
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            if not self.passing:
                await self._go.wait()
        finally:
            self.open -= 1
        self.answered += 1
        return web.Response(text="ok")

    def let_go(self) -> None:
        """Answer every request open now; later ones wait for the next call."""
        self._go.set()
        self._go = asyncio.Event()


@pytest.fixture
async def waves() -> AsyncIterator[Waves]:
    receiver = Waves()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    app.router.add_get("/{tail:.*}", receiver.handle)  # standing in for Intuned too
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        receiver.passing = True
        receiver.let_go()
        await runner.cleanup()


def leased_none_due(client: redis.Redis, count: int, due: str = keys.DUE_DELIVERY) -> bool:
    """Whether the due set holds ``count`` entries, all leased (none due now)."""
    seconds, micros = client.time()
    now = seconds * 1000 + micros // 1000
    return client.zcard(due) == count and not client.zcount(due, "-inf", now)


@dataclass
class Held:
    """What the held-request tests use: the API, a worker starter, the holding receiver, Redis."""

    api: AsyncTestClient[object]
    fake: FakeIntunedHandle
    start_worker: StartInprocWorker
    waves: Waves
    redis: redis.Redis

    async def deliveries(self, count: int) -> list[str]:
        """``count`` subscriptions of one completed run, each to its own path of the receiver."""
        run_id = self.fake.state.create_run(RunScript(outcome="completed", result=1))
        hooks = [(run_id, f"http://127.0.0.1:{self.waves.port}/hook/{i}") for i in range(count)]
        return await register_many(self.api, hooks, concurrency=8)

    async def answer_while_no_writes(self, *, answered: int, open_after: int) -> None:
        """Answer the requests open now while Redis takes no writes (nothing can be recorded),
        and wait until ``answered`` were answered and ``open_after`` are open; then writes
        resume and every request is answered at once."""
        waves = self.waves
        self.redis.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        try:
            waves.let_go()
            await wait_until(lambda: waves.answered == answered and waves.open == open_after)
        finally:
            self.redis.execute_command("CLIENT", "UNPAUSE")
            waves.passing = True
            waves.let_go()

    def delivered(self, sids: list[str]) -> bool:
        """Whether every one of ``sids`` is delivered."""
        return state_counts(self.redis, sids) == {"delivered": len(sids)}


@pytest.fixture
def held(
    api: AsyncTestClient[object],
    fake_intuned: FakeIntunedHandle,
    start_inproc_worker: StartInprocWorker,
    waves: Waves,
    redis_sync: redis.Redis,
) -> Held:
    return Held(api, fake_intuned, start_inproc_worker, waves, redis_sync)


async def test_a_hosts_turn_passes_on_when_its_post_ends_not_when_its_attempt_is_recorded(
    held: Held,
) -> None:
    # Twice the cap to one host: the first `cap` POSTs open at the receiver, the others parked in
    # the worker. Then no write can reach Redis, so no attempt can be recorded, and the open
    # POSTs are answered: their turns must pass to the parked ones, `cap` POSTs open again.
    # (Where a turn lasted until the record, the parked ones waited for Redis and this failed.)
    cap, waves = 4, held.waves
    sids = await held.deliveries(2 * cap)
    await held.start_worker(RELAY_MAX_IN_FLIGHT_PER_HOST=str(cap))
    await wait_until(lambda: waves.open == cap and leased_none_due(held.redis, 2 * cap))
    await held.answer_while_no_writes(answered=cap, open_after=cap)
    await wait_until(lambda: held.delivered(sids))
    assert waves.most_open == cap  # reached, never passed


async def test_attempts_waiting_for_their_record_leave_the_post_slots_to_others(
    held: Held,
) -> None:
    # RELAY_WORKER_CONCURRENCY POSTs at once and no more; an attempt whose POST ended waits for
    # its record beside them, not in a POST's place. As many deliveries to one host (its cap out
    # of the way) as the terminal lane's pump holds (twice the concurrency, less the run.started
    # lane's quarter): all are claimed and `concurrency` POSTs open. Then no write can reach
    # Redis and the open POSTs are answered: while their records cannot land, the rest must take
    # over their POST slots. (Where a pump slot was a POST slot, not all were claimed: failed.)
    concurrency, waves = 8, held.waves
    total = 2 * concurrency - concurrency // 4
    sids = await held.deliveries(total)
    await held.start_worker(
        RELAY_WORKER_CONCURRENCY=str(concurrency),
        RELAY_MAX_IN_FLIGHT_PER_HOST=str(4 * concurrency),
    )
    await wait_until(lambda: waves.open == concurrency and leased_none_due(held.redis, total))
    await held.answer_while_no_writes(answered=concurrency, open_after=total - concurrency)
    await wait_until(lambda: held.delivered(sids))
    assert waves.most_open == concurrency  # the POST slots: reached, never passed


async def test_polls_waiting_for_their_record_leave_the_get_slots_to_others(held: Held) -> None:
    # The same for polls, against a stand-in for Intuned that holds every GET: twice the
    # concurrency of runs, all claimed, `concurrency` GETs open; with no write reaching Redis the
    # open GETs are answered (junk: a poll error, recorded like any poll), and the other half
    # must take over their GET slots while those records cannot land.
    concurrency, waves = 4, held.waves
    hooks = [(f"held-{i}", f"http://127.0.0.1:{waves.port}/hook") for i in range(2 * concurrency)]
    await register_many(held.api, hooks, concurrency=8)
    waves.held = "/run/held-"  # the worker's start-up key probe (another run) passes at once
    await held.start_worker(
        RELAY_WORKER_CONCURRENCY=str(concurrency),
        INTUNED_API_BASE_URL=f"http://127.0.0.1:{waves.port}",
        RELAY_INTUNED_TIMEOUT="30s",  # held GETs must not time out (and be sent again) meanwhile
    )
    await wait_until(
        lambda: (
            waves.open == concurrency
            and leased_none_due(held.redis, 2 * concurrency, keys.DUE_POLL)
        )
    )
    await held.answer_while_no_writes(answered=concurrency, open_after=concurrency)
    await wait_until(lambda: waves.answered >= 2 * concurrency)
    assert waves.most_open == concurrency  # the GET slots: reached, never passed


async def test_a_turn_handed_to_a_parked_attempt_keeps_its_post_slot(
    held: Held, black_hole: BlackHole
) -> None:
    # Two POST slots, one POST per host. Two attempts to a held host: one open at the receiver,
    # one parked behind it. Then an attempt to a black hole takes the other slot, and one to a
    # second black hole waits for a slot. When the held POST is answered, its turn passes to the
    # parked attempt, slot and all: it is sent while the second black hole's attempt still waits.
    # (Where the slot went back to the queue, that attempt took it, and the parked one waited
    # for a black hole's timeout: its lease could run out meanwhile and it be sent twice.)
    waves = held.waves
    await held.deliveries(2)
    await held.start_worker(
        RELAY_WORKER_CONCURRENCY="2",
        RELAY_MAX_IN_FLIGHT_PER_HOST="1",
        RELAY_DELIVERY_TIMEOUT="60s",  # the black holes hold their slots all along
        RELAY_SHUTDOWN_GRACE="1s",
    )
    await wait_until(lambda: waves.open == 1 and leased_none_due(held.redis, 2))
    second = BlackHole()
    server = await asyncio.start_server(second.on_connect, "127.0.0.1", 0)
    try:
        for port, leased in ((black_hole.port, 3), (server.sockets[0].getsockname()[1], 4)):
            run_id = held.fake.state.create_run(RunScript(outcome="completed", result=1))
            await register_many(held.api, [(run_id, f"http://127.0.0.1:{port}/hook")])
            await wait_until(functools.partial(leased_none_due, held.redis, leased))
        await wait_until(lambda: black_hole.open == 1)
        waves.let_go()
        await wait_until(lambda: waves.answered == 1 and waves.open == 1)  # the parked one's
        assert second.accepted == 0 and black_hole.open == 1
    finally:
        server.close()
        await second.close_all()
        await server.wait_closed()
