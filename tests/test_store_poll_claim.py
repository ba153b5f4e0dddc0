"""A poll claim reads back exactly what the watch holds: the run's project and id whatever
characters they have, the first-seen and not-found times, the interval, the deadline and the
push flags, each present or absent as stored; and a fan-out's claim says so."""

from __future__ import annotations

from redis.asyncio import Redis

from relay.model import EVENT_STATUSES, DueWork, PushOutcome, run_key
from relay.store import Stores, keys
from relay.store.keys import WatchField as W
from relay.store.types import ClaimedPoll
from tests.support.api_helpers import make_doc
from tests.support.store_helpers import rd_of, register

AWKWARD = 'quote " backslash \\ slash / tab \t newline \n nul-ish \x01 é 中 \U0001f600'


async def watch_fields(redis: Redis, rd: str) -> dict[str, str]:
    raw = await redis.hgetall(keys.watch(rd))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_a_plain_watch_claims_back_its_run_and_no_optional_field(
    redis_client: Redis, store: Stores
) -> None:
    d = make_doc("alpha", 'proj "\\ / ü?&\x02 \U0001f600', AWKWARD, 1_764_490_000_123)
    await register(store, d)
    rd = rd_of(d)
    w = await watch_fields(redis_client, rd)

    [claim] = await store.watches.claim_polls(10)

    assert (claim.project, claim.run_id) == (d.project_name, d.run_id)
    assert claim.rk == w[W.RUN_KEY] == run_key(d.project_name, d.run_id)
    assert (claim.kind, claim.rd, claim.iv) == ("poll", rd, 0.0)
    assert claim.first_seen == claim.fs == int(w[W.FIRST_SEEN]) and claim.now >= claim.fs
    assert (claim.nf, claim.dl) == (None, None)
    assert not (claim.px or claim.pg or claim.pn or claim.sw)


async def test_every_optional_field_of_a_watch_claims_back_as_stored(
    redis_client: Redis, store: Stores
) -> None:
    d = make_doc("alpha", "p", AWKWARD + " pushed", 1_000, events=(*EVENT_STATUSES, "started"))
    rk = run_key(d.project_name, d.run_id)
    await store.starts.expect_push(rk, 3_600_000, "tok-awkward", "h")
    await register(store, d)
    rd = rd_of(d)
    await store.watches.claim_polls(10)
    await store.watches.record_poll_error(rd, 0, 2.125, not_found=True)
    assert await store.starts.pushed(rk, 0) is PushOutcome.TRIGGERED
    w = await watch_fields(redis_client, rd)

    [claim] = await store.watches.claim_polls(10)

    assert claim == ClaimedPoll(
        kind=DueWork.POLL,
        rd=rd,
        rk=rk,
        now=claim.now,
        iv=2.125,
        fs=int(w[W.FIRST_SEEN]),
        nf=int(w[W.NOT_FOUND_SINCE]),
        dl=int(w[W.DEADLINE]),
        px=True,
        pg=True,
        pn=True,
        sw=True,  # a run.started subscriber, and the run not seen started yet
    )
    assert claim.run_id == d.run_id
    await store.watches.release_polls([rd])
    [again] = await store.watches.claim_polls(10)
    assert (again.pn, again.pg, again.px, again.nf) == (False, True, True, claim.nf)


async def test_a_deadline_without_a_push_and_a_run_without_starters(store: Stores) -> None:
    d = make_doc("alpha", "p", "no-push", 1_000, events=("completed",))
    await store.starts.expect_push(run_key("p", "no-push"), 60_000)
    await register(store, d)

    [claim] = await store.watches.claim_polls(10)

    assert claim.dl is not None and claim.dl > claim.now
    assert not (claim.px or claim.pg or claim.pn or claim.sw) and claim.nf is None


async def test_an_ended_run_claims_back_as_a_fan_out(store: Stores) -> None:
    d = make_doc("alpha", "p", AWKWARD, 1_000)
    await register(store, d)
    rd = rd_of(d)
    [first] = await store.watches.claim_polls(10)
    await store.watches.record_result(rd, "completed", b"\xff\x00 not text", 0, 1.0)
    await store.watches.release_polls([rd])

    [claim] = await store.watches.claim_polls(10)

    assert (claim.kind, claim.rd, claim.rk, claim.run_id) == (DueWork.FANOUT, rd, first.rk, AWKWARD)
    assert await store.watches.claim_polls(10) == []
