"""Our Intuned client against the real fake over sockets: every outcome class, every fault."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx
import msgspec
import pytest

from relay.fake_intuned import FakeIntunedHandle, Fault, RateLimitConfig, RunScript
from relay.intuned.client import IntunedClient, disable_silent_retry, parse_retry_after
from relay.intuned.models import (
    RAW_FIELDS_DECODER,
    Fetched,
    NotFoundOutcome,
    RateLimited,
    Transient,
    Unauthorized,
)
from relay.intuned.start import Refused, Started
from tests.support.intuned_fixtures import (
    FAKE_API_KEY,
    FAKE_WORKSPACE_ID,
    OTHER_API_KEY,
    OTHER_WORKSPACE_ID,
    MakeFake,
    unreachable_intuned,
)
from tests.support.listener import scripted_http_listener

PROJECT = "demo-project"


def fetched(outcome: object) -> Fetched:
    """The outcome, asserted to be a Fetched."""
    assert isinstance(outcome, Fetched), outcome
    return outcome


async def test_fetched_through_the_whole_lifecycle(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    payloads = [{"api": "more", "runId": "r2", "parameters": {"p": 1}}]
    run_id = fake_intuned.state.create_run(
        RunScript(
            pending_polls=1, started_polls=1, result={"k": [1, "é"]}, extended_payloads=payloads
        )
    )
    got = [fetched(await intuned_client.get_result(PROJECT, run_id)) for _ in range(3)]
    assert [g.result.status for g in got] == ["pending", "started", "completed"]
    assert [g.result.is_terminal for g in got] == [False, False, True]
    done = got[2]
    assert done.result.run_id == run_id
    assert done.result.result == {"k": [1, "é"]}
    assert done.result.extended_payloads is not msgspec.UNSET
    assert set(RAW_FIELDS_DECODER.decode(done.raw)) == {
        "runId",
        "status",
        "result",
        "extendedPayloads",
    }
    assert set(RAW_FIELDS_DECODER.decode(got[0].raw)) == {"runId", "status"}


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
async def test_fetched_failed_and_canceled_pass_through_exactly(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient, outcome: str
) -> None:
    error = {
        "message": "m",
        "category": "execution",
        "code": "script-timeout",
        "retirable": True,
        "details": {"extra": [1, 2]},
        "futureField": "kept",
    }
    script = RunScript(outcome=outcome, error=error, message="why")  # type: ignore[arg-type]
    run_id = fake_intuned.state.create_run(script)
    got = fetched(await intuned_client.get_result(PROJECT, run_id))
    async with httpx.AsyncClient(
        base_url=fake_intuned.base_url, headers={"x-api-key": FAKE_API_KEY}, trust_env=False
    ) as raw:
        body = (
            await raw.get(f"/{FAKE_WORKSPACE_ID}/projects/{PROJECT}/run/{run_id}/result")
        ).content
    assert got.raw == body  # terminal answers are identical, so this is the fake's exact body
    fields = RAW_FIELDS_DECODER.decode(got.raw)
    for name, value in fields.items():
        assert bytes(value) in body
        assert msgspec.json.decode(bytes(value)) == msgspec.json.decode(body)[name]
    assert got.result.status == outcome
    assert got.result.message == "why"
    if outcome == "failed":
        assert msgspec.json.decode(bytes(fields["error"])) == error
        assert got.result.error.code == "script-timeout"  # type: ignore[union-attr]
    else:
        assert got.result.reason.type == "cancelled-user-action"  # type: ignore[union-attr]


async def test_unknown_enum_values_decode(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    failed = fake_intuned.state.create_run(RunScript(outcome="failed"))
    canceled = fake_intuned.state.create_run(RunScript(outcome="canceled"))
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", field="status", run_id=failed))
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", field="error.code", run_id=failed))
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", field="error.category", run_id=failed))
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", field="reason.type", run_id=canceled))
    unknown = fetched(await intuned_client.get_result(PROJECT, failed))
    assert unknown.result.status == "x-fake-unknown-status"
    assert not unknown.result.is_terminal
    code = fetched(await intuned_client.get_result(PROJECT, failed)).result
    assert code.error.code == "x-fake-unknown-code"  # type: ignore[union-attr]
    category = fetched(await intuned_client.get_result(PROJECT, failed)).result
    assert category.error.category == "x-fake-unknown-category"  # type: ignore[union-attr]
    reason = fetched(await intuned_client.get_result(PROJECT, canceled)).result
    assert reason.reason.type == "x-fake-unknown-reason"  # type: ignore[union-attr]
    assert reason.is_terminal


async def test_two_megabyte_result(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    run_id = fake_intuned.state.create_run(RunScript())
    fake_intuned.state.add_fault(
        Fault(kind="big_result", run_id=run_id, size_bytes=2 * 1024 * 1024)
    )
    got = fetched(await intuned_client.get_result(PROJECT, run_id))
    assert len(got.raw) > 2 * 1024 * 1024
    assert len(got.result.result["blob"]) > 2_000_000


async def test_not_found(fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient) -> None:
    run_id = fake_intuned.state.create_run(project_name="elsewhere")
    for project, rid in ((PROJECT, "no-such-run"), (PROJECT, run_id)):
        outcome = await intuned_client.get_result(project, rid)
        assert isinstance(outcome, NotFoundOutcome)
        assert "not found" in outcome.detail


async def test_unauthorized_401_and_403(make_fake_intuned: MakeFake) -> None:
    fake = make_fake_intuned(
        workspaces={FAKE_WORKSPACE_ID: FAKE_API_KEY, OTHER_WORKSPACE_ID: OTHER_API_KEY}
    )
    run_id = fake.state.create_run()
    async with IntunedClient(fake.base_url, FAKE_WORKSPACE_ID, "wrong-key", timeout=2) as bad:
        outcome = await bad.get_result(PROJECT, run_id)
        assert outcome == Unauthorized(
            status_code=401, detail="HTTP 401: Missing or invalid x-api-key header."
        )
        start = await bad.start(PROJECT, {"api": "a", "parameters": {}})
        assert isinstance(start, Refused)
        assert start.status_code == 401
    fake.state.configure(wrong_workspace_status=403)
    async with IntunedClient(fake.base_url, FAKE_WORKSPACE_ID, OTHER_API_KEY, timeout=2) as other:
        outcome = await other.get_result(PROJECT, run_id)
    assert isinstance(outcome, Unauthorized)
    assert outcome.status_code == 403


async def test_rate_limited_by_the_limiter(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    run_id = fake_intuned.state.create_run()
    fake_intuned.state.set_rate_limit(RateLimitConfig(limit=2))
    for _ in range(2):
        fetched(await intuned_client.get_result(PROJECT, run_id))
    assert await intuned_client.get_result(PROJECT, run_id) == RateLimited(retry_after=None)
    fake_intuned.state.set_rate_limit(RateLimitConfig(limit=0, retry_after=True))
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert outcome == RateLimited(retry_after=60.0)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("3", 3.0, 3.0),
        ("-5", 0.0, 0.0),
        ("soon", None, None),
        (None, None, None),
        ("date+30", 28.0, 31.0),
        ("date-30", 0.0, 0.0),
    ],
)
async def test_rate_limited_retry_after_values(
    fake_intuned: FakeIntunedHandle,
    intuned_client: IntunedClient,
    header: str | None,
    low: float | None,
    high: float | None,
) -> None:
    if header is not None and header.startswith("date"):
        when = datetime.now(UTC) + timedelta(seconds=int(header[4:]))
        header = format_datetime(when, usegmt=True)
    run_id = fake_intuned.state.create_run()
    fake_intuned.state.add_fault(Fault(kind="rate_limited", retry_after=header, run_id=run_id))
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert isinstance(outcome, RateLimited)
    if low is None:
        assert outcome.retry_after is None
    else:
        assert outcome.retry_after is not None
        assert low <= outcome.retry_after <= (high or low)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("", None),
        ("nan", None),
        ("inf", None),
        ("tomorrow", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00", 60.0),  # no zone: RFC 9110 dates are GMT
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 27, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(kind="error_500"), 500),
        (Fault(kind="gateway", status=502), 502),
        (Fault(kind="gateway", status=503), 503),
        (Fault(kind="gateway", status=504, body_format="text"), 504),
    ],
)
async def test_transient_5xx(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient, fault: Fault, status: int
) -> None:
    run_id = fake_intuned.state.create_run()
    fake_intuned.state.add_fault(msgspec.structs.replace(fault, run_id=run_id))
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert isinstance(outcome, Transient)
    assert (outcome.kind, outcome.status_code) == ("http_5xx", status)
    assert str(status) in outcome.detail


async def test_transient_other_status(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    run_id = fake_intuned.state.create_run()
    fake_intuned.state.add_fault(Fault(kind="gateway", status=302, run_id=run_id))  # not followed
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert isinstance(outcome, Transient)
    assert (outcome.kind, outcome.status_code) == (
        "http_status",
        302,
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="malformed_json"),
        *(Fault(kind="wrong_shape", shape=s) for s in ("list", "no_status", "no_run_id")),
        Fault(kind="wrong_shape", shape="wrong_types"),
        Fault(kind="wrong_shape", shape="string"),
    ],
)
async def test_bad_body(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient, fault: Fault
) -> None:
    run_id = fake_intuned.state.create_run()
    fake_intuned.state.add_fault(msgspec.structs.replace(fault, run_id=run_id))
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert isinstance(outcome, Transient)
    assert (outcome.kind, outcome.status_code) == ("bad_body", 200)


async def test_slow_past_the_timeout(fake_intuned: FakeIntunedHandle) -> None:
    run_id = fake_intuned.state.create_run(RunScript())
    fake_intuned.state.add_fault(Fault(kind="slow", delay_ms=1500, run_id=run_id))
    async with IntunedClient(
        fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=0.3
    ) as c:
        loop = asyncio.get_running_loop()
        began = loop.time()
        outcome = await c.get_result(PROJECT, run_id)
        assert loop.time() - began < 1.0
        assert isinstance(outcome, Transient)
        assert outcome.kind == "timeout"
        assert fetched(await c.get_result(PROJECT, run_id)).result.status == "completed"


async def test_connection_reset_and_refused(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    run_id = fake_intuned.state.create_run(RunScript())
    fake_intuned.state.add_fault(Fault(kind="reset", run_id=run_id))
    outcome = await intuned_client.get_result(PROJECT, run_id)
    assert isinstance(outcome, Transient), outcome
    assert outcome.kind == "connection"
    assert fake_intuned.state.poll_count(run_id) == 1  # no hidden re-send by aiohttp
    assert fetched(await intuned_client.get_result(PROJECT, run_id)).result.status == "completed"
    async with unreachable_intuned() as closed:
        refused = await closed.get_result(PROJECT, run_id)
    assert isinstance(refused, Transient)
    assert refused.kind == "connection"


async def test_project_names_are_one_percent_encoded_segment(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    project = "my project/v2?x=1#frag%20"
    started = await intuned_client.start(project, {"api": "a/b", "parameters": {"n": 1}})
    assert isinstance(started, Started)
    assert started.status == "pending"
    log = fake_intuned.state.start_log()
    assert [(s["projectName"], s["body"]) for s in log] == [
        (project, {"api": "a/b", "parameters": {"n": 1}})
    ]
    run_id = started.run_id
    assert fetched(await intuned_client.get_result(project, run_id)).result.run_id == run_id
    odd = fake_intuned.state.create_run(RunScript(), run_id="run/with space", project_name=project)
    assert fetched(await intuned_client.get_result(project, odd)).result.run_id == odd
    assert isinstance(await intuned_client.get_result("my project", odd), NotFoundOutcome)


async def test_many_concurrent_polls(fake_intuned: FakeIntunedHandle) -> None:
    run_ids = [fake_intuned.state.create_run(RunScript(pending_polls=1)) for _ in range(50)]
    async with IntunedClient(
        fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=5, max_connections=8
    ) as client:
        for _ in range(2):
            outcomes = await asyncio.gather(*(client.get_result(PROJECT, r) for r in run_ids * 2))
            assert all(isinstance(o, Fetched) for o in outcomes)
    assert all(fake_intuned.state.poll_count(r) == 4 for r in run_ids)


async def test_waiting_for_a_free_connection_is_not_charged_against_the_timeout(
    fake_intuned: FakeIntunedHandle,
) -> None:
    # One connection, answers that take 0.4 s, a 1 s timeout, four polls at once: each waits
    # for the connection, then has its whole timeout for its own request. (Where the wait was
    # charged, the third and fourth timed out.)
    run_ids = [fake_intuned.state.create_run(RunScript()) for _ in range(4)]
    for run_id in run_ids:
        fake_intuned.state.add_fault(Fault(kind="slow", delay_ms=400, run_id=run_id))
    async with IntunedClient(
        fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=1, max_connections=1
    ) as client:
        outcomes = await asyncio.gather(*(client.get_result(PROJECT, r) for r in run_ids))
    assert [fetched(o).result.status for o in outcomes] == ["completed"] * 4


async def test_api_key_never_in_repr_or_logs(
    fake_intuned: FakeIntunedHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run_id = fake_intuned.state.create_run(RunScript())
    for fault in (Fault(kind="error_500"), Fault(kind="reset"), Fault(kind="malformed_json")):
        fake_intuned.state.add_fault(msgspec.structs.replace(fault, run_id=run_id))
    client = IntunedClient(fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=2)
    async with client:
        outcomes: list[object] = [await client.get_result(PROJECT, run_id) for _ in range(4)]
        outcomes.append(await client.start(PROJECT, {"api": "a", "parameters": {}}))
        outcomes.append(await client.get_result(PROJECT, "missing"))
    assert FAKE_API_KEY not in repr(client)
    assert FAKE_API_KEY not in str(client)
    assert FAKE_WORKSPACE_ID in repr(client)
    assert all(FAKE_API_KEY not in repr(o) for o in outcomes)
    assert any("intuned GET" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert FAKE_API_KEY not in record.getMessage()
        assert FAKE_API_KEY not in repr(record.args)


async def test_undecodable_content_encoding_is_a_bad_body() -> None:
    # The one edge the fake cannot produce through aiohttp: a body that fails to decompress.
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 8\r\n\r\nnot gzip"
    path = "/api/v1/workspace/ws/projects/demo-project/run/r/result"
    async with (
        scripted_http_listener({path: answer}) as (port, requested),
        IntunedClient(f"http://127.0.0.1:{port}/api/v1/workspace", "ws", FAKE_API_KEY) as c,
    ):
        outcome = await c.get_result(PROJECT, "r")
    assert isinstance(outcome, Transient)
    assert outcome.kind == "bad_body"
    assert requested == [path]


async def test_a_dropped_keep_alive_request_is_not_sent_again() -> None:
    # aiohttp re-sends an idempotent request once when a reused connection drops; the client
    # turns that off (disable_silent_retry). A plain session shows the retry the test guards.
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with scripted_http_listener({"/ok": ok}) as (port, requested):
        for session, sends in (
            (aiohttp.ClientSession(), 2),
            (disable_silent_retry(aiohttp.ClientSession()), 1),
        ):
            requested.clear()
            async with session:
                async with session.get(f"http://127.0.0.1:{port}/ok") as resp:
                    assert await resp.read() == b"ok"
                with pytest.raises(aiohttp.ServerDisconnectedError):
                    await session.get(f"http://127.0.0.1:{port}/drop")
            assert requested == ["/ok"] + ["/drop"] * sends
