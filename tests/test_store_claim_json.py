"""A claim travels as one JSON document per entry (Lua's cjson) with the run's result beside it:
what a worker reads back is exactly what was stored, whatever characters the document holds,
and a result that is not text is not touched."""

from __future__ import annotations

from relay.model import EVENT_STATUSES, FailureCode, WatchFailure
from relay.store import Stores
from tests.support.api_helpers import make_doc
from tests.support.store_helpers import SECRET, rd_of, register, terminal

AWKWARD = 'quote " backslash \\ slash / tab \t newline \n nul-ish \x01 é 中 \U0001f600'


async def test_a_claim_reads_back_every_awkward_field_and_a_binary_result_exactly(
    store: Stores,
) -> None:
    d = make_doc(
        "alpha",
        "proj / ü?&",
        'run 1/é"\\',
        1_764_490_000_123,
        metadata=('{"note":"' + AWKWARD.replace("\\", "\\\\").replace('"', '\\"')).encode()
        + b'\\n\\t\\u0001","n":[1,2.5e3,null]}',
        callback_url="http://127.0.0.1:9/h%C3%A9/path?a=1&b=%22x%22#frag",
        headers={"X-Note": AWKWARD.replace("\n", " ").replace("\t", " ").replace("\x01", " ")},
        events=tuple(e for e in EVENT_STATUSES if e != "failed"),
    )
    await register(store, d)
    result = bytes(range(256)) * 3  # not UTF-8, not JSON: it must come back byte for byte
    await terminal(store, d, "completed", result)

    [claim] = await store.deliveries.claim_deliveries(10)

    assert claim.doc == d
    assert bytes(claim.doc.metadata) == bytes(d.metadata)
    assert claim.result == result and claim.result_known
    assert claim.failure is None
    assert claim.secrets == (SECRET,)
    assert claim.series == 1 and claim.attempts_in_series == 0
    assert claim.now > 1_700_000_000_000 and claim.run_digest == rd_of(d)


async def test_a_claim_carries_both_secrets_within_the_rotation_overlap(store: Stores) -> None:
    d = make_doc("alpha", "proj", "run-rot", 1_000)
    await register(store, d)
    fresh = "whsec_bmV3LXNlY3JldC0wMTIzNDU2Nzg5"
    await store.secrets.rotate_secret("alpha", fresh)
    await terminal(store, d, "completed", b'{"status":"completed"}')

    [claim] = await store.deliveries.claim_deliveries(10)

    assert claim.secrets == (fresh, SECRET)
    assert claim.doc == d and claim.result == b'{"status":"completed"}'


async def test_a_claim_reads_back_an_awkward_failure_message_exactly(store: Stores) -> None:
    d = make_doc("alpha", "proj", "run-failed", 1_000)
    await register(store, d)
    failure = WatchFailure(FailureCode.RUN_NOT_FOUND, AWKWARD)
    await store.watches.record_watch_failure(rd_of(d), failure)
    await store.watches.fan_out_all(rd_of(d))

    [claim] = await store.deliveries.claim_deliveries(10)

    assert claim.failure == failure and claim.doc == d
    assert claim.result is None
