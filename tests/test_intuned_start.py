"""``IntunedClient.start`` against the fake over sockets: one test per typed outcome.

Each case checks what the fake saw, so "safe to retry" (``Unavailable``) really means no run was
created and ``Unknown`` really means one may exist.
"""

from __future__ import annotations

import msgspec
import pytest

from relay.fake_intuned import FakeIntunedHandle, Fault
from relay.intuned.client import IntunedClient
from relay.intuned.start import Refused, Started, Unavailable, Unknown, classify_start_answer
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID, unreachable_intuned

PROJECT = "demo-project"
BODY = {
    "api": "scrape/list",
    "parameters": {"page": 1},
    "requestTimeout": 60,
    "retry": {"maximumAttempts": 2},
    "saveTrace": False,
    "futureField": {"nested": [1, 2]},  # unknown to us: must reach Intuned unchanged
}


async def test_started_sends_the_body_exactly(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    outcome = await intuned_client.start(PROJECT, BODY)
    assert isinstance(outcome, Started), outcome
    assert outcome.status == "pending"
    assert msgspec.json.decode(outcome.raw) == {"runId": outcome.run_id, "status": "pending"}
    assert fake_intuned.state.start_log() == [
        {"projectName": PROJECT, "runId": outcome.run_id, "body": BODY}
    ]
    raw = b'{"api":"a","parameters":{},"x":1}'
    again = await intuned_client.start(PROJECT, raw)
    assert isinstance(again, Started)
    assert fake_intuned.state.start_log()[-1]["body"] == {"api": "a", "parameters": {}, "x": 1}
    fake_intuned.state.configure(start_status=200)  # the older docs' status is still a start
    assert isinstance(await intuned_client.start(PROJECT, BODY), Started)


async def test_refused_keeps_intuneds_status_and_body(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    invalid = await intuned_client.start(PROJECT, {"api": "", "parameters": []})
    assert isinstance(invalid, Refused), invalid
    assert invalid.status_code == 400
    body = msgspec.json.decode(invalid.body)
    assert body["code"] == "bad-request"
    assert "api must be a non-empty string" in body["message"]
    fake_intuned.state.add_fault(Fault(kind="refuse", endpoint="start", status=422))
    refused = await intuned_client.start(PROJECT, BODY)
    assert isinstance(refused, Refused)
    assert refused.status_code == 422
    assert msgspec.json.decode(refused.body)["code"] == "unprocessable-entity"
    fake_intuned.state.configure(known_projects=["only"])
    missing = await intuned_client.start(PROJECT, BODY)
    assert isinstance(missing, Refused) and missing.status_code == 404
    fake_intuned.state.add_fault(Fault(kind="rate_limited", endpoint="start"))
    limited = await intuned_client.start("only", BODY)
    assert isinstance(limited, Refused) and limited.status_code == 429
    assert fake_intuned.state.start_log() == []  # nothing was started by any of these


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_unavailable(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient, status: int
) -> None:
    kind = "error_500" if status == 500 else "gateway"
    fake_intuned.state.add_fault(Fault(kind=kind, endpoint="start", status=status))
    outcome = await intuned_client.start(PROJECT, BODY)
    assert isinstance(outcome, Unavailable), outcome
    assert outcome.status_code == status
    assert fake_intuned.state.start_log() == []
    assert isinstance(await intuned_client.start(PROJECT, BODY), Started)  # the retry works


async def test_connection_refused_is_unavailable() -> None:
    async with unreachable_intuned() as client:
        outcome = await client.start(PROJECT, BODY)
    assert isinstance(outcome, Unavailable), outcome
    assert outcome.status_code is None


async def test_hang_after_receive_is_unknown_and_the_run_exists(
    fake_intuned: FakeIntunedHandle,
) -> None:
    fake_intuned.state.add_fault(Fault(kind="hang", endpoint="start", delay_ms=3000))
    base = fake_intuned.base_url
    async with IntunedClient(base, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=0.5) as client:
        outcome = await client.start(PROJECT, BODY)
    assert isinstance(outcome, Unknown), outcome
    assert len(fake_intuned.state.start_log()) == 1  # Intuned did start it: never retry


async def test_drop_after_send_is_unknown(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    assert isinstance(await intuned_client.start(PROJECT, BODY), Started)  # warm any pool
    fake_intuned.state.add_fault(Fault(kind="reset", endpoint="start"))
    outcome = await intuned_client.start(PROJECT, BODY)
    assert isinstance(outcome, Unknown), outcome
    assert len(fake_intuned.state.start_log()) == 1  # no hidden re-send started a second


async def test_2xx_without_a_run_id_is_unknown(
    fake_intuned: FakeIntunedHandle, intuned_client: IntunedClient
) -> None:
    fake_intuned.state.add_fault(Fault(kind="wrong_shape", endpoint="start", shape="no_run_id"))
    assert isinstance(await intuned_client.start(PROJECT, BODY), Unknown)
    assert isinstance(classify_start_answer(302, b""), Unknown)
