"""The worker process: an arq Worker plus the two pumps, opened and closed together.

arq runs the jobs the API enqueues (``poll_now`` for a run's first poll, ``deliver_now`` for a
redelivery or a late registration) and the periodic ``sweep``; the pumps drain the due sets
(``workers.pump``). On SIGTERM/SIGINT the worker stops taking work, lets in-flight polls and
deliveries finish within RELAY_SHUTDOWN_GRACE, hands the rest back to Redis and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog
from arq.connections import ArqRedis
from arq.cron import cron
from arq.worker import Worker, func
from redis.asyncio import Redis

from relay.cpuwait import CoreWait
from relay.intuned.client import IntunedClient
from relay.metrics import WorkerMetrics, serve_metrics
from relay.model import Lane, now_ms
from relay.readiness import StartupChecks
from relay.settings import Settings
from relay.store import ClaimedDelivery, ClaimedPoll, Stores, keys
from relay.webhooks.hostgate import HostGate
from relay.webhooks.sender import WebhookSender
from workers.delivery import deliver_claimed
from workers.deps import WorkerDeps
from workers.health import HEALTH_CHECK_INTERVAL, health_check_key
from workers.operational import (
    CONFIRM_TRIES,
    confirm_operational,
    deliver_operational,
    max_tries,
)
from workers.polling import poll_claimed
from workers.pump import Pump

log = structlog.get_logger("relay.worker")

QUEUE_NAME = "relay:arq"
# Entries leased per claim script call: small enough that one call stays well under Redis's
# 20 ms slow-command line on a busy box (a delivery claim reads ~6 fields per entry).
CLAIM_BATCH = 64
# Seam "record slots" (bench/NOTES.md, session 25): a poll or delivery holds its pump slot until
# it is recorded (the slots of a record group come free together, one wake per group), but its
# request slot (the Intuned client's or the sender's pool, RELAY_WORKER_CONCURRENCY) only until
# the answer is in. This many pump slots per request slot let work wait for its record beside the
# requests, not in their place: more polls and deliveries/s from one worker (bigger groups). The
# pumps never have more waiting for a request slot than there are (arq's rare jobs aside), so one
# waits for at most one request ahead of it to end, then makes its own: within its lease (2 x the
# timeout + 5 s).
SLOTS_PER_REQUEST = 2
# How long arq gets, once the jobs left after the shutdown grace are cancelled, to hand them back.
ARQ_HAND_BACK_WAIT = 2.0
# How long a cancelled task gets to end before it is cancelled again (``cancel_and_wait``).
RECANCEL_AFTER = 1.0
# Seam "gen-0 GC threshold" (bench/NOTES.md, issue 12 fourth pass): net new container objects
# before the cyclic GC's young collection (CPython's default 700; see ``tune_gc``).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Young collections after ``GC_GEN0_THRESHOLD`` net new objects, not 700 (called once by
    a worker process; the older generations' thresholds stay). The in-flight polls keep
    thousands of objects alive: at 700 a collection walked and promoted them every ~20 polls
    and found almost no cycles. Cyclic garbage is still collected (a few MB at most waits)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, older, oldest)


async def poll_now(ctx: dict[str, Any], run: str) -> bool:
    """arq job: poll one run now if its poll is due (``run`` is its digest, ``run_digest``)."""
    deps: WorkerDeps = ctx["deps"]
    claim = await deps.store.watches.claim_poll(run)
    if claim is None:
        return False
    await poll_claimed(deps, claim)
    return True


async def deliver_now(ctx: dict[str, Any], subscription_id: str) -> bool:
    """arq job: deliver one subscription now if its attempt is due."""
    deps: WorkerDeps = ctx["deps"]
    claims = await deps.store.deliveries.claim_deliveries(1, only=subscription_id)
    for claim in claims:
        await deliver_claimed(deps, claim)
    return bool(claims)


async def sweep(ctx: dict[str, Any]) -> tuple[int, int]:
    """arq cron job: re-derive lost due entries and prune expired index entries, in bounded
    slices of the relay's own indexes from saved cursors."""
    deps: WorkerDeps = ctx["deps"]
    polls, deliveries, pruned = await deps.store.housekeeping.run()
    if polls or deliveries:
        log.warning("sweep_restored", polls=polls, deliveries=deliveries)
    if pruned:
        log.info("sweep_pruned", subscriptions=pruned)
    return polls, deliveries


async def open_deps(
    settings: Settings,
    redis: Redis,
    metrics: WorkerMetrics,
    clock: Callable[[], int] = now_ms,
) -> WorkerDeps:
    """Open the worker's clients (closed by ``close_deps``)."""
    sender = WebhookSender(
        timeout=settings.delivery_timeout,
        policy=settings.callback_policy,
        max_connections=settings.worker_concurrency,
        dns_timeout=settings.dns_timeout,
    )
    await sender.start()
    intuned = IntunedClient(
        settings.intuned_api_base_url,
        settings.intuned_workspace_id,
        settings.intuned_api_key,
        timeout=settings.intuned_timeout,
        max_connections=settings.worker_concurrency,
    )
    # Shares the worker's connection pool; encodes jobs as the arq worker decodes them.
    arq = ArqRedis(
        redis.connection_pool,
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
        default_queue_name=QUEUE_NAME,
    )
    stores = Stores.open(redis, settings)
    gate: HostGate[ClaimedDelivery] = HostGate(
        max_in_flight=settings.max_in_flight_per_host,
        breaker_threshold=settings.breaker_threshold,
        cooldown=settings.breaker_cooldown,
        # Parked deliveries keep their lease: they never wait half of it.
        max_park=stores.deliveries.lease_ms / 2000,
        waited=CoreWait().waited,  # this thread's: the event loop's
        worked=time.thread_time,
    )
    return WorkerDeps(
        settings=settings,
        store=stores,
        intuned=intuned,
        sender=sender,
        metrics=metrics,
        gate=gate,
        clock=clock,
        arq=arq,
    )


def build_pumps(deps: WorkerDeps) -> dict[str, Pump[Any]]:
    """The poll pump and one delivery pump per lane of this process."""
    watches, deliveries = deps.store.watches, deps.store.deliveries
    conc = deps.settings.worker_concurrency
    # The opt-in run.started events get a quarter of RELAY_WORKER_CONCURRENCY (out of the delivery
    # pumps' slots): a flood of them never holds up a terminal event (its own due set and pump).
    started_slots = max(1, conc // 4)

    async def release_polls(items: Sequence[ClaimedPoll]) -> None:
        await watches.release_polls([c.rd for c in items])

    # Partials, not wrapper coroutines: one await level less on every resume of a handler.
    handle_poll = functools.partial(poll_claimed, deps)
    handle_delivery = functools.partial(deliver_claimed, deps)

    def delivery_pump(lane: Lane) -> Pump[ClaimedDelivery]:
        started = lane is Lane.STARTED

        async def release(items: Sequence[ClaimedDelivery]) -> None:
            await deliveries.release_deliveries([c.subscription_id for c in items], lane)

        return Pump(
            "started" if started else "delivery",
            claim=deliveries.claim_notices if started else deliveries.claim_deliveries,
            handle=handle_delivery,
            next_due=deliveries.next_notice_due_in if started else deliveries.next_due_in,
            release=release,
            concurrency=started_slots if started else SLOTS_PER_REQUEST * conc - started_slots,
            batch=CLAIM_BATCH,
        )

    pumps: dict[str, Pump[Any]] = {
        "poll": Pump(
            "poll",
            claim=watches.claim_polls,
            handle=handle_poll,
            next_due=watches.next_due_in,
            release=release_polls,
            concurrency=SLOTS_PER_REQUEST * conc,
            batch=CLAIM_BATCH,
        )
    }
    for lane in Lane:
        pump = delivery_pump(lane)
        pumps[pump.name] = pump
    return pumps


async def _gauges(deps: WorkerDeps) -> None:
    """Refresh the shared gauges every few seconds (a failed refresh keeps the last values)."""
    while True:
        try:
            polls, deliveries = await deps.store.housekeeping.queue_depth()
            deps.metrics.queue_depth.labels("poll").set(polls)
            deps.metrics.queue_depth.labels("delivery").set(deliveries)
            deps.metrics.watched_runs.set(await deps.store.housekeeping.watched_runs())
            for name, pump in deps.pumps.items():
                deps.metrics.in_flight.labels(name).set(pump.in_flight)
        except Exception as exc:  # Redis away: the pumps report it; the gauges wait for it
            log.debug("gauges_refresh_failed", error=repr(exc))
        await asyncio.sleep(5)


async def _hand_back_parked(deps: WorkerDeps) -> None:
    """Release the deliveries the host gate still holds (due again at once for any worker)."""
    parked = deps.gate.drain()
    try:
        for lane in Lane:
            sids = [c.subscription_id for c in parked if c.lane is lane]
            await deps.store.deliveries.release_deliveries(sids, lane)
    except Exception as exc:  # Redis gone: they come back when their lease runs out
        log.warning("parked_release_failed", count=len(parked), error=repr(exc))


def build_worker(settings: Settings, deps: WorkerDeps) -> Worker:
    """The arq Worker of this process (signals are handled by ``run_worker``). It uses the
    worker's own Redis client (``deps.arq``), which ``run_worker`` closes last."""
    return Worker(
        functions=[
            func(poll_now, max_tries=3),
            func(deliver_now, max_tries=3),
            func(deliver_operational, max_tries=max_tries(settings.retry_schedule)),
            func(confirm_operational, max_tries=CONFIRM_TRIES),
        ],
        cron_jobs=[cron(sweep, minute=None, second=0, run_at_startup=True, unique=True)],
        redis_pool=deps.arq,
        queue_name=QUEUE_NAME,
        health_check_key=health_check_key(),
        health_check_interval=HEALTH_CHECK_INTERVAL,
        handle_signals=False,
        keep_result=0,
        max_jobs=settings.worker_concurrency,
        job_timeout=max(60, int(settings.delivery_timeout + settings.intuned_timeout) * 2),
        poll_delay=0.1,
        ctx={"deps": deps},
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
        log_results=False,
    )


async def _supervise_arq(worker: Worker, stop: asyncio.Event) -> None:
    """Run arq's loop until ``stop``; if Redis drops it (a restart), start it again."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            worker.main_task = asyncio.ensure_future(worker.main())
            await asyncio.wait({worker.main_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() or worker.main_task.cancelled():
                return
            exc = worker.main_task.exception()
            log.warning("arq_loop_restarting", error=repr(exc))
            await asyncio.sleep(1.0)
    finally:
        stopper.cancel()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on.

    Again, because on Python 3.11 a cancellation can be lost: redis-py sends each command under
    ``asyncio.wait_for``, which returns the command's result instead of raising CancelledError
    when the cancellation arrives as the write completes (CPython gh-86296, fixed in 3.12). A loop
    that lost it (arq's poll loop, the gauges, the wake listener) would run on, and a shutdown
    awaiting it would never end."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_AFTER)
    if not task.cancelled():
        task.exception()  # retrieved: one that failed as it was stopped is not reported as lost


async def stop_arq(worker: Worker, grace: float) -> None:
    """Stop arq's loop and wait out its jobs: those running get ``grace`` to finish, the rest are
    cancelled, which makes arq hand them back to its queue. Every arq task is done on return, so
    none of them uses the Redis client after ``run_worker`` closes it.

    Not ``Worker.close()``: that cancels the running jobs at once (no grace) and closes its pool
    with redis-py's deprecated ``close()``; the pool here is the worker's own client anyway."""
    worker.allow_pick_jobs = False
    if worker.main_task is not None:  # the poll loop: no job is started after this
        await cancel_and_wait(worker.main_task)
    running = set(worker.tasks.values())
    if not running:
        return
    _, late = await asyncio.wait(running, timeout=grace)
    if not late:
        return
    # Cancel the jobs, not arq's wrappers: a wrapper then records its job as not done (one
    # MULTI/EXEC) and another worker picks it up.
    log.info("arq_jobs_cancelled", count=len(late))
    for job in list(worker.job_tasks.values()):
        job.cancel()
    _, late = await asyncio.wait(late, timeout=ARQ_HAND_BACK_WAIT)
    # Redis unreachable: the job's in-progress key expires by itself.
    await asyncio.gather(*(cancel_and_wait(task) for task in late))


async def _wake_on_publish(deps: WorkerDeps, redis: Redis) -> None:
    """Wake the pumps when a script publishes that work is due now (a registration starting a
    watch or delivering at once, a redelivery, a fan-out). Only an optimisation: the pumps
    look at the due sets every RELAY pump idle period anyway."""
    channels = {
        keys.WAKE_POLL.encode(): "poll",
        keys.WAKE_DELIVERY.encode(): "delivery",
        keys.WAKE_NOTICE.encode(): "started",
    }
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as ps:
                await ps.subscribe(*channels)
                async for message in ps.listen():
                    pump = channels.get(message.get("channel", b""))
                    if pump is not None:
                        deps.wake(pump)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis went away: the pumps' idle polling covers the gap
            log.debug("wake_listener_error", error=repr(exc))
            await asyncio.sleep(1.0)


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], int] = now_ms,
) -> None:
    """Run a worker until SIGTERM/SIGINT (or ``stop``), then shut down gracefully. ``clock``
    is this process's wall clock (tests inject a skewed one)."""
    assert settings.redis_url is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # not the main thread, or a loop without signals: ``stop`` is then the only way out
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = WorkerMetrics()
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_port, metrics.registry, settings.metrics_token)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry_on_timeout=True,
    )
    deps = await open_deps(settings, redis, metrics, clock)
    checks = await StartupChecks.start(settings, redis, reprobe=False)  # warns; never stops us
    pumps = build_pumps(deps)
    deps.pumps.update(pumps)
    worker = build_worker(settings, deps)
    for pump in pumps.values():
        pump.start()
    gauges = asyncio.create_task(_gauges(deps))
    waker = asyncio.create_task(_wake_on_publish(deps, redis))
    log.info("worker_started", concurrency=settings.worker_concurrency)
    try:
        await _supervise_arq(worker, stop)
    finally:
        log.info("worker_stopping", grace_s=settings.shutdown_grace)
        await asyncio.gather(
            cancel_and_wait(gauges),
            cancel_and_wait(waker),
            stop_arq(worker, settings.shutdown_grace),
            *(p.stop(settings.shutdown_grace) for p in pumps.values()),
            return_exceptions=True,
        )
        await _hand_back_parked(deps)
        try:
            await redis.delete(worker.health_check_key)
        except Exception as exc:  # it expires by itself when Redis is gone
            log.debug("health_key_delete_failed", error=repr(exc))
        await deps.sender.aclose()
        await deps.intuned.aclose()
        await checks.aclose()
        await redis.aclose()
        log.info("worker_stopped")
