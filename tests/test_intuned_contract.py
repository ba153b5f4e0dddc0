"""Contract: Intuned's official Python SDK (intuned-client 1.1.1) and our client agree on the fake.

If the SDK parses what the fake emits, the fake speaks the documented wire format; if our client
decodes the same bytes (and everything the fake can emit besides), the relay can read Intuned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, get_args

import httpx
import msgspec
import pydantic_core
import pytest
from httpx_aiohttp import AiohttpTransport
from intuned_client import AsyncIntunedClient, IntunedClient, exceptions, models

from relay.fake_intuned import FakeIntunedHandle, Fault, RateLimitConfig, RunScript
from relay.intuned.client import IntunedClient as RelayClient
from relay.intuned.models import Fetched, NotFoundOutcome, RateLimited, Transient, Unauthorized
from tests.support.intuned_fixtures import (
    FAKE_API_KEY,
    FAKE_WORKSPACE_ID,
    OTHER_API_KEY,
    OTHER_WORKSPACE_ID,
    MakeFake,
)
from tests.support.receiver import ReceiverHandle

PROJECT = "contract project/1"
ERROR_KEYS = {"code", "category", "message", "retirable", "correlationId"}


def _literals(annotation: Any) -> list[str]:
    """Every string of the Literal(s) inside an annotation such as ``Literal[...] | None``."""
    values = [a for a in get_args(annotation) if isinstance(a, str)]
    for arg in get_args(annotation):
        values += _literals(arg) if get_args(arg) else []
    return sorted(set(values))


ERROR_CODES = _literals(models.RunResultResponseError.model_fields["code"].annotation)
CATEGORIES = _literals(models.RunResultResponseError.model_fields["category"].annotation)
REASONS = _literals(models.RunResultResponseReason.model_fields["type"].annotation)


@pytest.fixture
def sdk(fake_intuned: FakeIntunedHandle) -> Iterator[IntunedClient]:
    """The official sync SDK pointed at the fake."""
    http = httpx.Client(timeout=5, trust_env=False)
    client = IntunedClient(
        api_key=FAKE_API_KEY,
        workspace_id=FAKE_WORKSPACE_ID,
        base_url=fake_intuned.base_url,
        client=http,
    )
    try:
        yield client
    finally:
        client.close()
        http.close()


def test_sdk_start_parses_and_its_wire_body_is_accepted(
    fake_intuned: FakeIntunedHandle, sdk: IntunedClient
) -> None:
    body: Any = {
        "api": "a",
        "parameters": {},
        "retry": {},
        "auth_session": {"id": "s"},
        "sink": {"type": "webhook", "url": "http://h"},
    }
    started = sdk.projects.runs.start(project_name=PROJECT, body=body)
    assert started.status == "pending"
    assert len(started.run_id) == 21
    # The exact wire body of intuned-api.md §2's probe, received by the fake.
    assert fake_intuned.state.start_log()[0] == {
        "projectName": PROJECT,
        "runId": started.run_id,
        "body": {
            "parameters": {},
            "requestTimeout": 600,
            "retry": {"maximumAttempts": 3},
            "authSession": {
                "id": "s",
                "autoRecreate": True,
                "checkAttempts": 3,
                "createAttempts": 3,
                "requestTimeout": 600,
            },
            "sink": {"type": "webhook", "url": "http://h", "skipOnFail": False},
            "api": "a",
        },
    }
    got = [sdk.projects.runs.result(project_name=PROJECT, run_id=started.run_id) for _ in range(3)]
    assert [g.status for g in got] == ["pending", "started", "completed"]
    assert got[2].result == {"api": "a", "parameters": {}}


def test_sdk_start_with_a_webhook_sink_is_pushed(
    fake_intuned: FakeIntunedHandle, sdk: IntunedClient, receiver: ReceiverHandle
) -> None:
    fake_intuned.state.configure(default_script=RunScript(pending_seconds=0.05, result={"ok": 1}))
    sink = models.RunStartRequestBodySinkWebhookSinkConfiguration(
        type="webhook",
        url=receiver.url("/ok/intuned"),
        headers={"Authorization": "Bearer ingress-secret"},
    )
    body = models.RunStartRequestBody(api="a/b", parameters={"q": 1}, sink=sink)
    started = sdk.projects.runs.start(project_name=PROJECT, body=body)
    (push,) = receiver.wait_for(1)
    assert push.headers["authorization"] == "Bearer ingress-secret"
    payload = msgspec.json.decode(push.body)
    assert payload["apiInfo"]["runId"] == started.run_id
    assert payload["apiInfo"]["name"] == "a/b"
    assert payload["apiInfo"]["result"] == {
        "status": "completed",
        "result": {"ok": 1},
        "statusCode": 200,
    }
    assert payload["project"]["name"] == PROJECT
    assert payload["workspaceId"] == FAKE_WORKSPACE_ID
    sent = fake_intuned.state.start_log()[0]["body"]["sink"]
    assert sent["headers"] == {"Authorization": "Bearer ingress-secret"}
    # The run the push announced is completed for the SDK too, without any poll before.
    done = sdk.projects.runs.result(project_name=PROJECT, run_id=started.run_id)
    assert done.status == "completed" and done.result == {"ok": 1}


def test_sdk_parses_every_status(fake_intuned: FakeIntunedHandle, sdk: IntunedClient) -> None:
    payloads = [{"api": "next", "runId": "r2", "parameters": {"p": 1}}]
    run_id = fake_intuned.state.create_run(
        RunScript(pending_polls=1, started_polls=1, result=[1, "two"], extended_payloads=payloads),
        project_name=PROJECT,
    )
    got = [sdk.projects.runs.result(project_name=PROJECT, run_id=run_id) for _ in range(3)]
    assert [g.status for g in got] == ["pending", "started", "completed"]
    assert got[0].result is None
    assert got[0].error is None
    assert got[2].result == [1, "two"]
    assert got[2].extended_payloads is not None
    assert got[2].extended_payloads[0].run_id == "r2"

    failed = fake_intuned.state.create_run(
        RunScript(outcome="failed", message="m"), project_name=PROJECT
    )
    result = sdk.projects.runs.result(project_name=PROJECT, run_id=failed)
    assert result.status == "failed"
    assert result.message == "m"
    assert result.error is not None
    assert result.error.code == "script-execution-exception"
    assert result.error.retirable is False
    assert result.error.doc_url is not None

    canceled = fake_intuned.state.create_run(RunScript(outcome="canceled"), project_name=PROJECT)
    result = sdk.projects.runs.result(project_name=PROJECT, run_id=canceled)
    assert result.status == "canceled"
    assert result.reason is not None
    assert result.reason.type == "cancelled-user-action"


async def test_every_documented_enum_value_parses_in_the_sdk_and_in_our_client(
    fake_intuned: FakeIntunedHandle, sdk: IntunedClient
) -> None:
    scripts = [
        RunScript(
            outcome="failed",
            error={
                "message": f"e {code}",
                "category": category,
                "code": code,
                "retirable": True,
                "doc_url": "https://docs.intunedhq.com/docs/support/errors",
                "correlation_id": str(uuid.uuid4()),
                "details": {"attempt": 3},
            },
        )
        for code in ERROR_CODES
        for category in CATEGORIES
    ]
    scripts += [
        RunScript(
            outcome="canceled", reason={"type": t, "message": t, "doc_url": "u", "details": 1}
        )
        for t in REASONS
    ]
    assert len(ERROR_CODES) == 16
    assert len(CATEGORIES) == 5
    assert len(REASONS) == 7
    ours = RelayClient(fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY, timeout=2)
    async with ours:
        for script in scripts:
            run_id = fake_intuned.state.create_run(script, project_name=PROJECT)
            theirs = sdk.projects.runs.result(project_name=PROJECT, run_id=run_id)
            mine = await ours.get_result(PROJECT, run_id)
            assert isinstance(mine, Fetched)
            assert mine.result.status == theirs.status
            if theirs.error is not None:
                assert mine.result.error.code == theirs.error.code  # type: ignore[union-attr]
                assert mine.result.error.category == theirs.error.category  # type: ignore[union-attr]
            else:
                assert theirs.reason is not None
                assert mine.result.reason.type == theirs.reason.type  # type: ignore[union-attr]
            assert theirs.model_dump(by_alias=True, exclude_none=True) == msgspec.json.decode(
                mine.raw
            )


def test_sdk_rejects_a_200_start(fake_intuned: FakeIntunedHandle, sdk: IntunedClient) -> None:
    fake_intuned.state.configure(start_status=200)
    with pytest.raises(exceptions.ApiError) as caught:
        sdk.projects.runs.start(project_name=PROJECT, body={"api": "a", "parameters": {}})
    assert caught.value.status_code == 200
    assert type(caught.value) is exceptions.ApiError


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "paused"),
        ("error.code", "brand-new-code"),
        ("error.category", "cosmic"),
        ("reason.type", "new-reason"),
    ],
)
async def test_unknown_enum_values_break_the_sdk_but_not_us(
    fake_intuned: FakeIntunedHandle, sdk: IntunedClient, field: str, value: str
) -> None:
    outcome = "canceled" if field.startswith("reason") else "failed"
    run_id = fake_intuned.state.create_run(RunScript(outcome=outcome), project_name=PROJECT)  # type: ignore[arg-type]
    fake_intuned.state.add_fault(
        Fault(kind="unknown_enum", field=field, value=value, run_id=run_id)
    )  # type: ignore[arg-type]
    with pytest.raises(pydantic_core.ValidationError):
        sdk.projects.runs.result(project_name=PROJECT, run_id=run_id)
    fake_intuned.state.add_fault(
        Fault(kind="unknown_enum", field=field, value=value, run_id=run_id)
    )  # type: ignore[arg-type]
    async with RelayClient(fake_intuned.base_url, FAKE_WORKSPACE_ID, FAKE_API_KEY) as ours:
        mine = await ours.get_result(PROJECT, run_id)
    assert isinstance(mine, Fetched)
    assert value.encode() in mine.raw
    assert mine.result.is_terminal is (field != "status")


def _assert_error_body(body: Any, code: str, category: str = "user") -> None:
    assert isinstance(body, dict)
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert body["category"] == category
    uuid.UUID(body["correlationId"])


def test_sdk_exceptions_for_http_errors(
    make_fake_intuned: MakeFake, fake_intuned: FakeIntunedHandle, sdk: IntunedClient
) -> None:
    run_id = fake_intuned.state.create_run(project_name=PROJECT)
    runs = sdk.projects.runs

    with pytest.raises(exceptions.NotFoundError) as not_found:
        runs.result(project_name=PROJECT, run_id="missing")
    assert not_found.value.status_code == 404
    _assert_error_body(not_found.value.body, "not-found")

    fake_intuned.state.add_fault(Fault(kind="error_500", run_id=run_id))
    with pytest.raises(exceptions.ServerError) as server:
        runs.result(project_name=PROJECT, run_id=run_id)
    _assert_error_body(server.value.body, "internal-server-error", "infrastructure")
    assert server.value.body["retirable"] is True

    for status in (502, 503, 504):
        fake_intuned.state.add_fault(Fault(kind="gateway", status=status, run_id=run_id))
        with pytest.raises(exceptions.ServerError) as gateway:
            runs.result(project_name=PROJECT, run_id=run_id)
        assert gateway.value.status_code == status
        assert isinstance(gateway.value.body, str)
        assert "<html>" in gateway.value.body

    fake_intuned.state.set_rate_limit(RateLimitConfig(limit=0))
    with pytest.raises(exceptions.ValidationError) as limited:  # the SDK's 4xx catch-all
        runs.result(project_name=PROJECT, run_id=run_id)
    assert limited.value.status_code == 429
    _assert_error_body(limited.value.body, "too-many-requests")
    fake_intuned.state.set_rate_limit(RateLimitConfig(enabled=False))

    with pytest.raises(exceptions.ValidationError) as bad:
        runs.start(project_name=PROJECT, body={"api": "", "parameters": {}})
    assert bad.value.status_code == 400
    _assert_error_body(bad.value.body, "bad-request")

    with httpx.Client(trust_env=False) as http:
        wrong = IntunedClient(
            api_key="wrong",
            workspace_id=FAKE_WORKSPACE_ID,
            base_url=fake_intuned.base_url,
            client=http,
        )
        with pytest.raises(exceptions.AuthenticationError) as unauthorized:
            wrong.projects.runs.result(project_name=PROJECT, run_id=run_id)
    assert unauthorized.value.status_code == 401
    _assert_error_body(unauthorized.value.body, "unauthorized")

    two = make_fake_intuned(
        workspaces={FAKE_WORKSPACE_ID: FAKE_API_KEY, OTHER_WORKSPACE_ID: OTHER_API_KEY}
    )
    two.state.configure(wrong_workspace_status=403)
    with httpx.Client(trust_env=False) as http:
        other = IntunedClient(
            api_key=OTHER_API_KEY,
            workspace_id=FAKE_WORKSPACE_ID,
            base_url=two.base_url,
            client=http,
        )
        with pytest.raises(exceptions.AuthenticationError) as forbidden:
            other.projects.runs.result(project_name=PROJECT, run_id="any")
    assert forbidden.value.status_code == 403
    _assert_error_body(forbidden.value.body, "forbidden")


async def test_async_sdk_on_the_aiohttp_transport(fake_intuned: FakeIntunedHandle) -> None:
    async with (
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as http,
        AsyncIntunedClient(
            api_key=FAKE_API_KEY,
            workspace_id=FAKE_WORKSPACE_ID,
            base_url=fake_intuned.base_url,
            client=http,
        ) as sdk,
    ):
        started = await sdk.projects.runs.start(
            project_name=PROJECT, body={"api": "x", "parameters": {"k": "v"}}
        )
        statuses = [
            (await sdk.projects.runs.result(project_name=PROJECT, run_id=started.run_id)).status
            for _ in range(3)
        ]
    assert statuses == ["pending", "started", "completed"]


FAULT_OUTCOMES: list[tuple[Fault, type, str | None]] = [
    (Fault(kind="error_500"), Transient, "http_5xx"),
    (Fault(kind="gateway", status=502), Transient, "http_5xx"),
    (Fault(kind="gateway", status=503, body_format="text"), Transient, "http_5xx"),
    (Fault(kind="gateway", status=504), Transient, "http_5xx"),
    (Fault(kind="gateway", status=418, body_format="text"), Transient, "http_status"),
    (Fault(kind="slow", delay_ms=50), Fetched, None),
    (Fault(kind="reset"), Transient, "connection"),
    (Fault(kind="malformed_json"), Transient, "bad_body"),
    (Fault(kind="wrong_shape", shape="list"), Transient, "bad_body"),
    (Fault(kind="wrong_shape", shape="no_status"), Transient, "bad_body"),
    (Fault(kind="wrong_shape", shape="no_run_id"), Transient, "bad_body"),
    (Fault(kind="wrong_shape", shape="wrong_types"), Transient, "bad_body"),
    (Fault(kind="wrong_shape", shape="string"), Transient, "bad_body"),
    (Fault(kind="rate_limited"), RateLimited, None),
    (Fault(kind="rate_limited", retry_after="5"), RateLimited, None),
    (Fault(kind="unknown_enum", field="status"), Fetched, None),
    (Fault(kind="unknown_enum", field="error.code"), Fetched, None),
    (Fault(kind="unknown_enum", field="error.category"), Fetched, None),
    (Fault(kind="big_result"), Fetched, None),
]


async def test_our_client_classifies_everything_the_fake_emits(
    fake_intuned: FakeIntunedHandle, intuned_client: RelayClient
) -> None:
    for fault, expected, kind in FAULT_OUTCOMES:
        outcome_name = "failed" if fault.field.startswith("error") else "completed"
        run_id = fake_intuned.state.create_run(
            RunScript(outcome=outcome_name), project_name=PROJECT
        )  # type: ignore[arg-type]
        fake_intuned.state.add_fault(msgspec.structs.replace(fault, run_id=run_id))
        outcome = await intuned_client.get_result(PROJECT, run_id)
        assert isinstance(outcome, expected), (fault, outcome)
        if kind is not None:
            assert isinstance(outcome, Transient)
            assert outcome.kind == kind, (fault, outcome)
        assert fake_intuned.state.faults() == [], fault  # the fault was really served
    assert isinstance(await intuned_client.get_result(PROJECT, "nope"), NotFoundOutcome)
    fake_intuned.state.configure(retention_seconds=0)
    assert isinstance(await intuned_client.get_result(PROJECT, run_id), NotFoundOutcome)
    async with RelayClient(fake_intuned.base_url, FAKE_WORKSPACE_ID, "bad-key") as bad:
        assert isinstance(await bad.get_result(PROJECT, run_id), Unauthorized)
