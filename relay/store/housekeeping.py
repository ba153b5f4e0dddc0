"""Housekeeping: repair lost due entries, prune expired subscriptions' index entries, gauges.

Both walk the relay's own indexes (the clients' watching and delivering subscriptions from
cursors saved in Redis, the expiry queue by due time) in bounded slices, alternating, so
pruning is never starved by the sweep and neither ever scans the keyspace. This module must
never make HTTP calls.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from relay.store import keys
from relay.store.scripts import Script, decode_map, r
from relay.store.types import PruneSlice, SweepSlice
from relay.store.watches import redis_now

# Slices small enough to stay well under Redis's 20 ms slow line on a slow or busy machine
# (bench/NOTES.md has the measurements), many per job: up to 31,250 subscriptions per walk and
# 50,000 index entries pruned per sweep job.
SWEEP_WATCHING_PER_SLICE: Final = 125
SWEEP_DELIVERING_PER_SLICE: Final = 125
PRUNE_PER_SLICE: Final = 200
SLICES_PER_JOB: Final = 250


class Housekeeping:
    """The sweep and the pruning, and the counts the gauges show."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._sweep = Script(redis, "sweep")
        self._prune = Script(redis, "prune")

    async def sweep_slice(
        self,
        watching: int = SWEEP_WATCHING_PER_SLICE,
        delivering: int = SWEEP_DELIVERING_PER_SLICE,
    ) -> SweepSlice:
        """Repair one slice of the clients' watching and delivering indexes, from the cursors
        saved in Redis."""
        res = await self._sweep(
            [keys.HOUSEKEEPING, keys.DUE_POLL, keys.DUE_DELIVERY, keys.CLIENTS],
            [watching, delivering],
        )
        return decode_map(res, SweepSlice)

    async def prune_slice(self, limit: int = PRUNE_PER_SLICE) -> PruneSlice:
        """Drop the index entries of up to ``limit`` expired subscriptions."""
        return decode_map(await self._prune([keys.EXPIRING], [limit]), PruneSlice)

    async def run(self, max_slices: int = SLICES_PER_JOB) -> tuple[int, int, int]:
        """Alternate sweep and prune slices until a full sweep pass and the due pruning are
        done, or ``max_slices`` each; returns (polls restored, deliveries restored, pruned)."""
        polls = deliveries = pruned = 0
        watching = delivering = pruning = True
        for _ in range(max_slices):
            if watching or delivering:
                s = await self.sweep_slice()
                polls, deliveries = polls + s.polls, deliveries + s.deliveries
                watching = watching and not s.watching_done
                delivering = delivering and not s.delivering_done
            if pruning:
                p = await self.prune_slice()
                pruned += p.pruned
                pruning = p.seen >= PRUNE_PER_SLICE
            if not (watching or delivering or pruning):
                break
        return polls, deliveries, pruned

    async def watched_runs(self) -> int:
        """How many runs are being polled (each has one due entry)."""
        return int(await r(self.redis.zcard(keys.DUE_POLL)))

    async def queue_depth(self) -> tuple[int, int]:
        """How many polls and deliveries are due now (Redis's clock)."""
        now = await redis_now(self.redis)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(keys.DUE_POLL, "-inf", now)
            pipe.zcount(keys.DUE_DELIVERY, "-inf", now)
            polls, deliveries = await pipe.execute()
        return int(polls), int(deliveries)
