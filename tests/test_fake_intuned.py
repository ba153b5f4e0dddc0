"""The bundled fake Intuned, driven over real sockets exactly as intuned-api.md §8 asks."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest

from relay.fake_intuned import (
    FakeConfig,
    FakeIntuned,
    FakeIntunedHandle,
    FakeIntunedServer,
    Fault,
    RateLimitConfig,
    RunScript,
)
from tests.support.intuned_fixtures import (
    FAKE_API_KEY,
    FAKE_WORKSPACE_ID,
    OTHER_API_KEY,
    OTHER_WORKSPACE_ID,
    MakeFake,
    ManualClock,
)

PROJECT = "demo-project"
NANOID = re.compile(r"^[A-Za-z0-9_-]{21}$")
ERROR_KEYS = {"code", "category", "message", "retirable", "correlationId"}


def client_of(fake: FakeIntunedHandle) -> httpx.Client:
    """A plain HTTP client on ``fake``, with the right api key."""
    return httpx.Client(
        base_url=fake.base_url, headers={"x-api-key": FAKE_API_KEY}, trust_env=False
    )


@pytest.fixture
def raw(fake_intuned: FakeIntunedHandle) -> Iterator[httpx.Client]:
    """A plain HTTP client on the fake, with the right api key."""
    with client_of(fake_intuned) as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked(make_fake_intuned: MakeFake, clock: ManualClock) -> FakeIntunedHandle:
    """A fake on the manual ``clock`` (rate limiting off, as ``fake_intuned``)."""
    return make_fake_intuned(clock=clock)


def result_path(run_id: str, project: str = PROJECT, ws: str = FAKE_WORKSPACE_ID) -> str:
    """The result path, with the project percent-encoded as one segment."""
    return f"/{ws}/projects/{quote(project, safe='')}/run/{run_id}/result"


def poll(client: httpx.Client, run_id: str, project: str = PROJECT) -> httpx.Response:
    """One result request."""
    return client.get(result_path(run_id, project))


def statuses(client: httpx.Client, run_id: str, n: int) -> list[str]:
    """The run status of ``n`` consecutive polls (each must be a 200)."""
    out = []
    for _ in range(n):
        response = poll(client, run_id)
        assert response.status_code == 200, response.text
        out.append(response.json()["status"])
    return out


def assert_no_null(value: Any) -> None:
    """No JSON null anywhere (absent fields are omitted)."""
    assert value is not None
    if isinstance(value, dict):
        for item in value.values():
            assert_no_null(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_null(item)


def assert_error_body(response: httpx.Response, code: str, category: str = "user") -> None:
    """Intuned's standard error body (intuned-api.md §4)."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert body["category"] == category
    assert isinstance(body["message"], str)
    assert body["message"]
    uuid.UUID(body["correlationId"])


# ---- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_by_polls_completed(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    payloads = [{"api": "next-page", "parameters": {"page": 2}}]
    script = RunScript(
        pending_polls=2, started_polls=1, result={"rows": [1, 2]}, extended_payloads=payloads
    )
    run_id = fake_intuned.state.create_run(script)
    bodies = [poll(raw, run_id) for _ in range(5)]
    assert [b.json()["status"] for b in bodies] == [
        "pending",
        "pending",
        "started",
        "completed",
        "completed",
    ]
    assert bodies[0].json() == {"runId": run_id, "status": "pending"}
    assert bodies[2].json() == {"runId": run_id, "status": "started"}
    assert bodies[3].json() == {
        "runId": run_id,
        "status": "completed",
        "result": {"rows": [1, 2]},
        "extendedPayloads": payloads,
    }
    assert bodies[3].content == bodies[4].content  # terminal answers never change
    for body in bodies:
        assert body.headers["content-type"] == "application/json"
        assert b"null" not in body.content


@pytest.mark.parametrize(
    ("script", "expected_keys"),
    [
        (RunScript(outcome="failed"), {"runId", "status", "error"}),
        (RunScript(outcome="failed", message="boom"), {"runId", "status", "error", "message"}),
        (RunScript(outcome="canceled"), {"runId", "status", "reason"}),
        (RunScript(outcome="canceled", message="bye"), {"runId", "status", "reason", "message"}),
        (RunScript(outcome="completed"), {"runId", "status"}),
    ],
)
def test_terminal_shapes(
    fake_intuned: FakeIntunedHandle,
    raw: httpx.Client,
    script: RunScript,
    expected_keys: set[str],
) -> None:
    run_id = fake_intuned.state.create_run(script)
    first, second = poll(raw, run_id), poll(raw, run_id)
    body = first.json()
    assert body["status"] == script.outcome
    assert set(body) == expected_keys
    assert_no_null(body)
    assert first.content == second.content  # default error/reason fixed once per run
    if "error" in body:
        assert body["error"]["category"] == "execution"
        assert body["error"]["code"] == "script-execution-exception"
        assert body["error"]["retirable"] is False
        uuid.UUID(body["error"]["correlation_id"])
    if "reason" in body:
        assert body["reason"] == {
            "type": "cancelled-user-action",
            "message": "The run was canceled by a user.",
        }


def test_scripted_error_and_reason_pass_through(
    fake_intuned: FakeIntunedHandle, raw: httpx.Client
) -> None:
    error = {"message": "timed out", "category": "execution", "code": "script-timeout"}
    failed = fake_intuned.state.create_run(
        RunScript(outcome="failed", error=error, started_polls=1)
    )
    assert statuses(raw, failed, 1) == ["started"]
    assert poll(raw, failed).json() == {"runId": failed, "status": "failed", "error": error}
    reason = {"type": "api-access-disabled", "message": "redeployed", "details": {"x": 1}}
    canceled = fake_intuned.state.create_run(RunScript(outcome="canceled", reason=reason))
    assert poll(raw, canceled).json() == {"runId": canceled, "status": "canceled", "reason": reason}


def test_lifecycle_by_injected_clock(clocked: FakeIntunedHandle, clock: ManualClock) -> None:
    run_id = clocked.state.create_run(
        RunScript(pending_seconds=10, started_seconds=5, outcome="failed")
    )
    with client_of(clocked) as client:
        assert statuses(client, run_id, 3) == ["pending"] * 3
        clock.advance(9.9)
        assert statuses(client, run_id, 1) == ["pending"]
        clock.advance(0.1)
        assert statuses(client, run_id, 2) == ["started"] * 2
        clock.advance(4.9)
        assert statuses(client, run_id, 1) == ["started"]
        clock.advance(0.1)
        assert statuses(client, run_id, 2) == ["failed"] * 2
    stats = clocked.state.run_stats(run_id)
    assert stats.first_terminal_at == pytest.approx(1015.0)
    assert stats.terminal_status == "failed"


def test_polls_and_time_both_hold_a_phase(clocked: FakeIntunedHandle, clock: ManualClock) -> None:
    run_id = clocked.state.create_run(
        RunScript(pending_polls=2, pending_seconds=1, outcome="canceled")
    )
    with client_of(clocked) as client:
        clock.advance(5)  # time is spent, but two pending answers are still owed
        assert statuses(client, run_id, 3) == ["pending", "pending", "canceled"]


def test_flip_back_after_terminal(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    run_id = fake_intuned.state.create_run(
        RunScript(flip_back_after_terminal=True, flip_back_polls=2, result={"a": 1})
    )
    assert statuses(raw, run_id, 5) == ["completed", "started", "started", "completed", "completed"]
    stats = fake_intuned.state.run_stats(run_id)
    assert stats.first_terminal_at == stats.log[0].at
    assert stats.by_run_status == {"completed": 3, "started": 2}


# ---- start -------------------------------------------------------------------------------------


def test_start_creates_a_pending_run_with_default_script(
    fake_intuned: FakeIntunedHandle, raw: httpx.Client
) -> None:
    body = {
        "api": "scrapers/list",
        "parameters": {"q": "x"},
        "requestTimeout": 600,
        "saveTrace": True,
        "retry": {"maximumAttempts": 3},
        "sink": {"type": "webhook", "url": "http://127.0.0.1:1/hook"},
        "somethingNew": [1, 2],
    }
    project = "my project/v2"
    response = raw.post(f"/{FAKE_WORKSPACE_ID}/projects/my%20project%2Fv2/run/start", json=body)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    started = response.json()
    assert set(started) == {"runId", "status"}
    assert started["status"] == "pending"
    assert NANOID.match(started["runId"])
    assert fake_intuned.state.start_log() == [
        {"projectName": project, "runId": started["runId"], "body": body}
    ]
    got = [poll(raw, started["runId"], project).json() for _ in range(3)]
    assert [g["status"] for g in got] == ["pending", "started", "completed"]
    assert got[2]["result"] == {"api": "scrapers/list", "parameters": {"q": "x"}}
    assert fake_intuned.state.run_stats(started["runId"]).project_name == project


def test_start_status_switch_to_200(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    fake_intuned.state.configure(start_status=200)
    body = {"api": "a", "parameters": {}}
    response = raw.post(f"/{FAKE_WORKSPACE_ID}/projects/p/run/start", json=body)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize(
    "content",
    [
        b"{}",
        b"not json",
        b"[]",
        b'{"api": "", "parameters": {}}',
        b'{"api": 7, "parameters": {}}',
        b'{"api": "a"}',
        b'{"api": "a", "parameters": []}',
        b'{"api": "a", "parameters": {}, "requestTimeout": "600"}',
        b'{"api": "a", "parameters": {}, "requestTimeout": true}',
        b'{"api": "a", "parameters": {}, "saveTrace": "yes"}',
        b'{"api": "a", "parameters": {}, "retry": 3}',
        b'{"api": "a", "parameters": {}, "sink": "webhook"}',
    ],
)
def test_start_validation_400(
    fake_intuned: FakeIntunedHandle, raw: httpx.Client, content: bytes
) -> None:
    response = raw.post(
        f"/{FAKE_WORKSPACE_ID}/projects/p/run/start",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert_error_body(response, "bad-request")
    assert fake_intuned.state.run_ids() == []


def test_start_unknown_project_404(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    fake_intuned.state.configure(known_projects=["known"])
    body = {"api": "a", "parameters": {}}
    assert raw.post(f"/{FAKE_WORKSPACE_ID}/projects/known/run/start", json=body).status_code == 201
    response = raw.post(f"/{FAKE_WORKSPACE_ID}/projects/other/run/start", json=body)
    assert response.status_code == 404
    assert_error_body(response, "not-found")


# ---- auth and 404 ------------------------------------------------------------------------------


@pytest.fixture
def two_workspaces(make_fake_intuned: MakeFake) -> FakeIntunedHandle:
    """A fake with two workspaces, each with its own key."""
    return make_fake_intuned(
        workspaces={FAKE_WORKSPACE_ID: FAKE_API_KEY, OTHER_WORKSPACE_ID: OTHER_API_KEY}
    )


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"authorization": FAKE_API_KEY}])
def test_missing_or_wrong_key_401(fake_intuned: FakeIntunedHandle, headers: dict[str, str]) -> None:
    run_id = fake_intuned.state.create_run()
    with httpx.Client(base_url=fake_intuned.base_url, headers=headers) as client:
        for response in (
            client.get(result_path(run_id)),
            client.post(f"/{FAKE_WORKSPACE_ID}/projects/p/run/start", json={}),
        ):
            assert response.status_code == 401
            assert_error_body(response, "unauthorized")
            assert response.json()["retirable"] is False
    assert fake_intuned.state.poll_count(run_id) == 0


@pytest.mark.parametrize("status", [401, 403])
def test_key_of_another_workspace(two_workspaces: FakeIntunedHandle, status: int) -> None:
    if status == 403:
        two_workspaces.state.configure(wrong_workspace_status=403)
    run_id = two_workspaces.state.create_run()
    with httpx.Client(
        base_url=two_workspaces.base_url, headers={"x-api-key": OTHER_API_KEY}
    ) as client:
        response = client.get(result_path(run_id))
    assert response.status_code == status
    assert_error_body(response, "unauthorized" if status == 401 else "forbidden")


def test_result_404_unknown_other_project_other_workspace(
    two_workspaces: FakeIntunedHandle,
) -> None:
    run_id = two_workspaces.state.create_run(project_name="alpha")
    with httpx.Client(base_url=two_workspaces.base_url) as client:
        mine = {"x-api-key": FAKE_API_KEY}
        other = {"x-api-key": OTHER_API_KEY}
        assert client.get(result_path(run_id, "alpha"), headers=mine).status_code == 200
        for response in (
            client.get(result_path("nope", "alpha"), headers=mine),
            client.get(result_path(run_id, "beta"), headers=mine),
            client.get(result_path(run_id, "alpha", OTHER_WORKSPACE_ID), headers=other),
        ):
            assert response.status_code == 404
            assert_error_body(response, "not-found")


def test_reserved_and_unknown_routes(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    for path in ("/projects/p/jobs", "/projects/p/jobs/j/runs", "/projects/p/auth-sessions"):
        response = raw.get(f"/{FAKE_WORKSPACE_ID}{path}")
        assert response.status_code == 501
        assert_error_body(response, "not-implemented", "infrastructure")
    assert raw.post(f"/{FAKE_WORKSPACE_ID}/web-tasks/start", json={}).status_code == 501
    unauth = raw.get(f"/{FAKE_WORKSPACE_ID}/projects/p/jobs", headers={"x-api-key": "x"})
    assert unauth.status_code == 401
    response = raw.post(f"/{FAKE_WORKSPACE_ID}/projects/p/run", json={})  # the removed sync run
    assert response.status_code == 404
    assert_error_body(response, "not-found")


# ---- rate limit --------------------------------------------------------------------------------


def test_rate_limit_20_per_minute_per_concrete_path(
    make_fake_intuned: MakeFake, clock: ManualClock
) -> None:
    fake = make_fake_intuned(clock=clock, config=FakeConfig())  # the documented default
    first, second = fake.state.create_run(), fake.state.create_run()
    with client_of(fake) as client:
        assert [client.get(result_path(first)).status_code for _ in range(20)] == [200] * 20
        limited = client.get(result_path(first))
        assert limited.status_code == 429
        assert "retry-after" not in limited.headers
        assert_error_body(limited, "too-many-requests")
        assert limited.json()["retirable"] is True
        assert client.get(result_path(second)).status_code == 200  # its own path, its own budget
        clock.advance(59.9)
        assert client.get(result_path(first)).status_code == 429
        clock.advance(0.1)
        assert client.get(result_path(first)).status_code == 200
    stats = fake.state.run_stats(first)
    assert stats.by_http_status == {200: 21, 429: 2}
    assert [r.note for r in stats.log if r.http_status == 429] == ["rate-limited"] * 2


def test_rate_limit_retry_after_template_scope_and_custom_body(
    clocked: FakeIntunedHandle, clock: ManualClock
) -> None:
    clocked.state.set_rate_limit(
        RateLimitConfig(
            limit=3,
            window_seconds=10,
            scope="template",
            retry_after=True,
            body="slow down",
            content_type="text/plain",
        )
    )
    runs = [clocked.state.create_run() for _ in range(4)]
    with client_of(clocked) as client:
        assert [client.get(result_path(r)).status_code for r in runs[:3]] == [200] * 3
        clock.advance(2.5)
        limited = client.get(result_path(runs[3]))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "8"  # ceil(10 - 2.5)
        assert limited.headers["content-type"].startswith("text/plain")
        assert limited.text == "slow down"
        start = client.post(f"/{FAKE_WORKSPACE_ID}/projects/p/run/start", json={"api": "a"})
        assert start.status_code == 400  # another template, its own budget
        clocked.state.set_rate_limit(RateLimitConfig(enabled=False))
        assert all(client.get(result_path(runs[3])).status_code == 200 for _ in range(30))


# ---- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault(kind="error_500"), 500, "application/json"),
        (Fault(kind="gateway", status=502), 502, "text/html"),
        (Fault(kind="gateway", status=503, body_format="text"), 503, "text/plain"),
        (Fault(kind="gateway", status=504), 504, "text/html"),
        (Fault(kind="gateway", status=409, body_format="text"), 409, "text/plain"),
        (Fault(kind="rate_limited"), 429, "application/json"),
        (Fault(kind="rate_limited", retry_after="7"), 429, "application/json"),
        (Fault(kind="malformed_json"), 200, "application/json"),
    ],
)
def test_http_faults_then_normal(
    fake_intuned: FakeIntunedHandle,
    raw: httpx.Client,
    fault: Fault,
    status: int,
    content_type: str,
) -> None:
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=1))
    fake_intuned.state.add_fault(msgspec.structs.replace(fault, times=2))
    faulty = [poll(raw, run_id), poll(raw, run_id)]
    for response in faulty:
        assert response.status_code == status
        assert response.headers["content-type"].startswith(content_type)
    if fault.kind == "error_500":
        assert_error_body(faulty[0], "internal-server-error", "infrastructure")
        assert faulty[0].json()["retirable"] is True
    if fault.kind == "gateway":
        with pytest.raises(ValueError, match=r"Expecting value|Extra data"):
            faulty[0].json()
        assert str(status) in faulty[0].text
    if fault.kind == "rate_limited":
        assert faulty[0].headers.get("retry-after") == fault.retry_after
    if fault.kind == "malformed_json":
        with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
            faulty[0].json()
    # Faults do not advance the lifecycle: the run still owes its one pending answer.
    assert statuses(raw, run_id, 2) == ["pending", "completed"]
    assert fake_intuned.state.run_stats(run_id).log[0].note == f"fault:{fault.kind}"


@pytest.mark.parametrize("shape", ["list", "no_status", "no_run_id", "wrong_types", "string"])
def test_wrong_shape_fault(fake_intuned: FakeIntunedHandle, raw: httpx.Client, shape: str) -> None:
    run_id = fake_intuned.state.create_run(RunScript())
    fake_intuned.state.add_fault(Fault(kind="wrong_shape", shape=shape, run_id=run_id))  # type: ignore[arg-type]
    body = poll(raw, run_id).json()
    valid = (
        isinstance(body, dict)
        and isinstance(body.get("runId"), str)
        and isinstance(body.get("status"), str)
    )
    assert not valid
    assert poll(raw, run_id).json()["status"] == "completed"


def test_unknown_enum_faults(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    failed = fake_intuned.state.create_run(RunScript(outcome="failed", pending_polls=1))
    canceled = fake_intuned.state.create_run(RunScript(outcome="canceled"))
    for field in ("error.code", "error.category", "reason.type"):
        fake_intuned.state.add_fault(Fault(kind="unknown_enum", field=field, endpoint="result"))
    fake_intuned.state.add_fault(Fault(kind="unknown_enum", field="status", run_id=failed))
    assert poll(raw, failed).json() == {"runId": failed, "status": "x-fake-unknown-status"}
    assert poll(raw, failed).json()["status"] == "pending"  # rewrite faults wait for a field
    body = poll(raw, failed).json()
    assert body["error"]["code"] == "x-fake-unknown-code"
    assert body["error"]["category"] == "execution"
    assert poll(raw, failed).json()["error"]["category"] == "x-fake-unknown-category"
    assert poll(raw, canceled).json()["reason"]["type"] == "x-fake-unknown-reason"
    assert poll(raw, canceled).json()["reason"]["type"] == "cancelled-user-action"
    assert fake_intuned.state.faults() == []


def test_big_result_fault(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    run_id = fake_intuned.state.create_run(RunScript(started_polls=1))
    fake_intuned.state.add_fault(Fault(kind="big_result", run_id=run_id))
    assert poll(raw, run_id).json()["status"] == "started"
    response = poll(raw, run_id)
    assert 2_000_000 <= len(response.content) < 2_000_100
    assert response.json()["status"] == "completed"


def test_slow_and_reset_faults(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    run_id = fake_intuned.state.create_run(RunScript())
    fake_intuned.state.add_fault(Fault(kind="slow", delay_ms=300, run_id=run_id))
    began = time.monotonic()
    assert poll(raw, run_id).json()["status"] == "completed"
    assert time.monotonic() - began >= 0.3
    fake_intuned.state.add_fault(Fault(kind="reset", run_id=run_id))
    with pytest.raises(httpx.TransportError):
        poll(raw, run_id)
    assert poll(raw, run_id).status_code == 200
    assert [r.note for r in fake_intuned.state.run_stats(run_id).log] == [
        "fault:slow",
        "fault:reset",
        "answer",
    ]


def test_fault_scopes_times_and_clearing(
    fake_intuned: FakeIntunedHandle, raw: httpx.Client
) -> None:
    one, two = fake_intuned.state.create_run(), fake_intuned.state.create_run()
    fake_intuned.state.add_fault(Fault(kind="error_500", run_id=one, times=None))
    assert [poll(raw, one).status_code for _ in range(3)] == [500] * 3
    assert poll(raw, two).status_code == 200  # a run's fault stays with that run
    fake_intuned.state.clear_faults(two)
    assert poll(raw, one).status_code == 500
    fake_intuned.state.clear_faults(one)
    assert poll(raw, one).status_code == 200
    fake_intuned.state.add_fault(Fault(kind="gateway", status=503, times=3))  # global, result only
    assert [poll(raw, r).status_code for r in (one, two, one, two)] == [503, 503, 503, 200]
    start = f"/{FAKE_WORKSPACE_ID}/projects/p/run/start"
    fake_intuned.state.add_fault(Fault(kind="error_500", endpoint="start"))
    assert raw.post(start, json={"api": "a", "parameters": {}}).status_code == 500
    assert raw.post(start, json={"api": "a", "parameters": {}}).status_code == 201
    with pytest.raises(ValueError, match="times"):
        fake_intuned.state.add_fault(Fault(kind="error_500", times=0))


# ---- retention, counters -----------------------------------------------------------------------


def test_retention_ttl(clocked: FakeIntunedHandle, clock: ManualClock) -> None:
    clocked.state.configure(retention_seconds=60)
    run_id = clocked.state.create_run()
    with client_of(clocked) as client:
        clock.advance(60)
        assert client.get(result_path(run_id)).status_code == 200
        clock.advance(0.5)
        expired = client.get(result_path(run_id))
    assert expired.status_code == 404
    assert_error_body(expired, "not-found")
    assert clocked.state.run_stats(run_id).log[-1].note == "expired"


def test_poll_counters_and_log(fake_intuned: FakeIntunedHandle, raw: httpx.Client) -> None:
    run_id = fake_intuned.state.create_run(RunScript(pending_polls=2))
    fake_intuned.state.add_fault(Fault(kind="error_500", run_id=run_id))
    before = time.time()
    for _ in range(5):
        poll(raw, run_id)
    stats = fake_intuned.state.run_stats(run_id)
    assert stats.polls == fake_intuned.state.poll_count(run_id) == 5
    assert stats.by_http_status == {500: 1, 200: 4}
    assert stats.by_run_status == {"pending": 2, "completed": 2}
    ats = [r.at for r in stats.log]
    assert ats == sorted(ats)
    assert all(before <= r.wall <= time.time() for r in stats.log)
    assert stats.first_terminal_at == stats.log[3].at
    assert stats.first_terminal_wall == stats.log[3].wall
    totals = fake_intuned.state.stats()
    assert totals.result_requests == 5
    assert totals.by_http_status == {500: 1, 200: 4}


# ---- control API, other ways to run ------------------------------------------------------------


def test_control_api_over_http(fake_intuned: FakeIntunedHandle) -> None:
    with httpx.Client(base_url=fake_intuned.root_url, trust_env=False) as control:
        created = control.post(
            "/_fake/runs",
            json={
                "runId": "my-run-1",
                "projectName": "proj x",
                "script": {"pendingPolls": 1, "outcome": "failed", "message": "m"},
            },
        )
        assert created.status_code == 201
        assert created.json() == {
            "runId": "my-run-1",
            "projectName": "proj x",
            "workspaceId": FAKE_WORKSPACE_ID,
        }
        assert control.post("/_fake/runs", json={"runId": "my-run-1"}).status_code == 409
        assert control.post("/_fake/runs", json={"script": {"nope": 1}}).status_code == 400
        assert control.post("/_fake/faults", json={"kind": "explode"}).status_code == 400
        armed = control.post(
            "/_fake/faults", json=[{"kind": "error_500", "runId": "my-run-1", "times": 1}]
        )
        assert armed.json() == {"armed": 1}
        assert control.get("/_fake/faults").json()[0]["kind"] == "error_500"
        limit = control.post("/_fake/rate-limit", json={"enabled": True, "limit": 3})
        assert limit.json()["limit"] == 3
        assert limit.json()["enabled"] is True
        config = control.post("/_fake/config", json={"startStatus": 200})
        assert config.json()["startStatus"] == 200
        assert control.post("/_fake/config", json={"startStatus": "x"}).status_code == 400

        with httpx.Client(
            base_url=fake_intuned.base_url, headers={"x-api-key": FAKE_API_KEY}
        ) as intuned:
            codes = [intuned.get(result_path("my-run-1", "proj x")).status_code for _ in range(4)]
            assert codes == [500, 200, 200, 429]
            start = intuned.post(
                f"/{FAKE_WORKSPACE_ID}/projects/p/run/start", json={"api": "a", "parameters": {}}
            )
            assert start.status_code == 200

        run = control.get("/_fake/runs/my-run-1").json()
        assert run["polls"] == 4
        assert run["byHttpStatus"] == {"500": 1, "200": 2, "429": 1}
        assert run["terminalStatus"] == "failed"
        assert run["firstTerminalAt"] == run["log"][2]["at"]
        assert control.get("/_fake/runs/unknown").status_code == 404
        assert control.get("/_fake/runs").json()["runIds"][0] == "my-run-1"
        assert control.get("/_fake/stats").json()["resultRequests"] == 4
        assert control.get("/_fake/starts").json()[0]["body"] == {"api": "a", "parameters": {}}
        assert control.delete("/_fake/faults").status_code == 204
        assert control.post("/_fake/reset").status_code == 204
        assert control.get("/_fake/runs").json() == {"runIds": []}
        assert control.get("/_fake/config").json()["startStatus"] == 201
        assert control.get("/_fake/rate-limit").json()["enabled"] is False


async def test_server_in_the_current_loop() -> None:
    fake = FakeIntuned({FAKE_WORKSPACE_ID: FAKE_API_KEY})
    async with FakeIntunedServer(fake, port=0) as srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/api/v1/workspace"
        run_id = fake.create_run(project_name=PROJECT)
        async with httpx.AsyncClient(
            base_url=srv.base_url, headers={"x-api-key": FAKE_API_KEY}, trust_env=False
        ) as client:
            response = await client.get(result_path(run_id))
    assert response.json()["status"] == "pending"


def test_custom_prefix_and_stop_is_idempotent(make_fake_intuned: MakeFake) -> None:
    fake = make_fake_intuned(prefix="/intuned/")
    assert fake.base_url.endswith("/intuned")
    run_id = fake.state.create_run()
    with client_of(fake) as client:
        assert client.get(result_path(run_id)).status_code == 200
    fake.stop()
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.base_url, trust_env=False)


def test_run_fake_intuned_serves_until_sigterm() -> None:
    code = (
        "from relay.fake_intuned import run_fake_intuned\n"
        f"run_fake_intuned('127.0.0.1', 0, {FAKE_WORKSPACE_ID!r}, {FAKE_API_KEY!r},"
        " on_ready=lambda url: print(url, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+/api/v1/workspace$", base_url)
        with httpx.Client(base_url=base_url, headers={"x-api-key": FAKE_API_KEY}) as client:
            body = {"api": "a", "parameters": {}}
            started = client.post(f"/{FAKE_WORKSPACE_ID}/projects/p/run/start", json=body)
            assert started.status_code == 201
            run_id = started.json()["runId"]
            got = [client.get(result_path(run_id, "p")).status_code for _ in range(21)]
        assert got == [200] * 20 + [429]  # the CLI fake enforces the documented rate limit
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_api_and_workers_never_import_the_fake() -> None:
    code = (
        "import sys, relay.api.app, relay.api.asgi, workers.runner, workers.polling\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('relay.fake_intuned'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
