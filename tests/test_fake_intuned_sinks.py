"""Webhook sinks of the bundled fake (intuned-api.md §6), over real sockets into a receiver.

The fake pushes Intuned's sink payload when a run ends, with the sink's static headers, retries
non-2xx a bounded number of times, and obeys the per-run push faults (lost, delayed, duplicated,
early). Absence is only asserted once the fake logged the push as not sent, or once a push that
was due in the same tick arrived, so no test depends on timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from relay.fake_intuned import CreateRun, FakeIntunedHandle, PushFaults, RunScript
from relay.fake_intuned.control_client import ControlError, FakeControl
from relay.fake_intuned.models import PushRecord
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID, MakeFake, ManualClock
from tests.support.receiver import ReceiverHandle

PROJECT = "demo-project"
SECRET_HEADER = {"X-Relay-Ingress": "s3cret-value"}


def wait_pushes(fake: FakeIntunedHandle, run_id: str, n: int, timeout: float = 10.0) -> list[Any]:
    """Block until the fake logged ``n`` push records for ``run_id``."""
    deadline = time.monotonic() + timeout
    while len(got := fake.state.pushes(run_id)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(got)} pushes of {run_id}, wanted {n}: {got}")
        time.sleep(0.01)
    return got


@pytest.fixture
def fast_retries(fake_intuned: FakeIntunedHandle) -> FakeIntunedHandle:
    """The fixture's fake with a short backoff and attempt timeout."""
    fake_intuned.state.configure(
        sink_backoff_seconds=0.02,
        sink_timeout_seconds=0.5,
        sink_attempts=3,
        default_script=RunScript(),  # ends at once, no poll needed
    )
    return fake_intuned


@pytest.fixture
def control(fake_intuned: FakeIntunedHandle) -> Iterator[FakeControl]:
    """The HTTP control client of the fixture's fake."""
    with FakeControl(fake_intuned.root_url) as client:
        yield client


def sink(receiver: ReceiverHandle, path: str = "/ok", **extra: Any) -> dict[str, Any]:
    """A webhook sink to the receiver with a static secret header."""
    return {"type": "webhook", "url": receiver.url(path), "headers": SECRET_HEADER, **extra}


def test_started_run_with_sink_is_pushed_without_any_poll(
    fake_intuned: FakeIntunedHandle, receiver: ReceiverHandle
) -> None:
    fake_intuned.state.configure(default_script=RunScript(pending_seconds=0.1, result={"n": 3}))
    body = {
        "api": "scrape/list",
        "parameters": {"page": 2},
        "authSession": {"id": "sess-1"},
        "sink": sink(receiver, "/ok/run", skipOnFail=False),
    }
    with httpx.Client(base_url=fake_intuned.base_url, trust_env=False) as client:
        resp = client.post(
            f"/{FAKE_WORKSPACE_ID}/projects/{PROJECT}/run/start",
            json=body,
            headers={"x-api-key": FAKE_API_KEY},
        )
    assert resp.status_code == 201
    run_id = resp.json()["runId"]
    (push,) = receiver.wait_for(1)
    assert push.method == "POST" and push.path == "/ok/run"
    assert push.headers["x-relay-ingress"] == "s3cret-value"
    assert push.headers["content-type"] == "application/json"
    assert not any(h.startswith("webhook-") for h in push.headers)  # Intuned signs nothing
    payload = msgspec.json.decode(push.body)
    assert payload == {
        "apiInfo": {
            "name": "scrape/list",
            "parameters": {"page": 2},
            "runId": run_id,
            "result": {"status": "completed", "result": {"n": 3}, "statusCode": 200},
        },
        "workspaceId": FAKE_WORKSPACE_ID,
        "project": {"id": payload["project"]["id"], "name": PROJECT},
        "authSession": {"id": "sess-1"},
    }
    stats = fake_intuned.state.run_stats(run_id)
    assert stats.polls == 0 and stats.ended_at is not None
    assert stats.sink == body["sink"]
    (record,) = wait_pushes(fake_intuned, run_id, 1)
    assert (record.status_code, record.note, record.copy, record.attempt) == (200, "sent", 0, 1)


def test_failed_run_payload_and_poll_driven_end(
    fake_intuned: FakeIntunedHandle, receiver: ReceiverHandle, control: FakeControl
) -> None:
    script = RunScript(pending_polls=1, outcome="failed", message="boom")
    run_id = control.create_run(CreateRun(script=script, sink=sink(receiver), api="a"))
    with httpx.Client(base_url=fake_intuned.base_url, trust_env=False) as client:
        path = f"/{FAKE_WORKSPACE_ID}/projects/{PROJECT}/run/{run_id}/result"
        statuses = [
            client.get(path, headers={"x-api-key": FAKE_API_KEY}).json()["status"] for _ in range(2)
        ]
    assert statuses == ["pending", "failed"]
    (push,) = receiver.wait_for(1)
    result = msgspec.json.decode(push.body)["apiInfo"]["result"]
    assert result == {
        "status": "failed",
        "statusCode": 500,
        "error": "script-execution-exception",
        "message": "boom",
    }


def test_non_2xx_is_retried_a_bounded_number_of_times(
    fast_retries: FakeIntunedHandle, receiver: ReceiverHandle
) -> None:
    fake = fast_retries
    flaky = fake.state.create(CreateRun(sink=sink(receiver, "/flaky/2/a")))
    down = fake.state.create(CreateRun(sink=sink(receiver, "/status/503/b")))
    slow = fake.state.create(CreateRun(sink=sink(receiver, "/slow/3000/c")))
    records = wait_pushes(fake, flaky, 3)
    assert [r.status_code for r in records] == [500, 500, 200]
    records = wait_pushes(fake, down, 4)  # three attempts, then the fake gives up
    assert [(r.attempt, r.status_code, r.note) for r in records] == [
        (1, 503, "sent"),
        (2, 503, "sent"),
        (3, 503, "sent"),
        (3, None, "gave-up"),
    ]
    records = wait_pushes(fake, slow, 4)
    assert all(r.note.startswith("error:") for r in records[:3])  # each attempt timed out
    assert records[3].note == "gave-up"
    assert len([r for r in receiver.requests if r.path.startswith("/status/503")]) == 3
    assert len(fake.state.pushes(flaky)) == 3  # nothing after the 2xx


def test_push_lost_duplicated_and_skipped(
    fake_intuned: FakeIntunedHandle, receiver: ReceiverHandle, control: FakeControl
) -> None:
    fake_intuned.state.configure(default_script=RunScript())
    lost = control.create_run(
        CreateRun(sink=sink(receiver, "/ok/lost"), push_faults=PushFaults(lost=True))
    )
    assert [r.note for r in wait_pushes(fake_intuned, lost, 1)] == ["lost"]
    dup = control.create_run(
        CreateRun(sink=sink(receiver, "/ok/dup"), push_faults=PushFaults(duplicates=2))
    )
    wait_pushes(fake_intuned, dup, 3)
    got = [r for r in receiver.requests if r.path == "/ok/dup"]
    assert len(got) == 3 and len({r.body for r in got}) == 1
    failed = RunScript(outcome="failed")
    skip = control.create_run(CreateRun(script=failed, sink=sink(receiver, skipOnFail=True)))
    other = control.create_run(CreateRun(api="b", sink=sink(receiver, apisToSend=["a"])))
    remote = control.create_run(CreateRun(sink={"type": "webhook", "url": "http://10.9.9.9/x"}))
    assert wait_pushes(fake_intuned, skip, 1)[0].note == "skipped:skipOnFail"
    assert wait_pushes(fake_intuned, other, 1)[0].note == "skipped:apisToSend"
    assert wait_pushes(fake_intuned, remote, 1)[0].note == "refused:not-loopback"
    assert not any(r.path.startswith("/ok/lost") for r in receiver.requests)
    assert [p.run_id for p in control.pushes(lost)] == [lost]


def test_push_delayed_on_the_fake_clock(
    make_fake_intuned: MakeFake, receiver: ReceiverHandle
) -> None:
    clock = ManualClock()
    fake = make_fake_intuned(clock=clock)
    script = RunScript(pending_seconds=5)
    prompt = fake.state.create(CreateRun(script=script, sink=sink(receiver, "/ok/prompt")))
    late = fake.state.create(
        CreateRun(
            script=script,
            sink=sink(receiver, "/ok/late"),
            push_faults=PushFaults(delay_seconds=30),
        )
    )
    marker = fake.state.create(
        CreateRun(script=RunScript(pending_seconds=34), sink=sink(receiver, "/ok/marker"))
    )
    clock.advance(5)
    wait_pushes(fake, prompt, 1)  # due in the same tick as ``late`` would have been
    assert fake.state.pushes(late) == []
    clock.advance(29)
    wait_pushes(fake, marker, 1)  # 34 s: one second before ``late`` is due
    assert fake.state.pushes(late) == []
    clock.advance(1)
    assert wait_pushes(fake, late, 1)[0].note == "sent"
    assert [r.path for r in receiver.requests] == ["/ok/prompt", "/ok/marker", "/ok/late"]


def test_push_before_the_result_shows_terminal(
    make_fake_intuned: MakeFake, receiver: ReceiverHandle
) -> None:
    clock = ManualClock()
    fake = make_fake_intuned(clock=clock)
    run_id = fake.state.create(
        CreateRun(
            script=RunScript(pending_seconds=1, result=1),
            sink=sink(receiver),
            push_faults=PushFaults(early_seconds=10),
        )
    )
    path = f"/{FAKE_WORKSPACE_ID}/projects/{PROJECT}/run/{run_id}/result"
    with httpx.Client(
        base_url=fake.base_url, headers={"x-api-key": FAKE_API_KEY}, trust_env=False
    ) as client:
        assert client.get(path).json()["status"] == "pending"
        clock.advance(1)
        receiver.wait_for(1)
        assert client.get(path).json()["status"] == "started"  # pushed, not yet visible
        clock.advance(10)
        assert client.get(path).json() == {"runId": run_id, "status": "completed", "result": 1}


def test_push_faults_over_the_control_api(
    make_fake_intuned: MakeFake, receiver: ReceiverHandle
) -> None:
    clock = ManualClock()
    fake = make_fake_intuned(clock=clock)
    with FakeControl(fake.root_url) as control:
        control.configure({"pushFaults": {"duplicates": 1}})  # the default for later runs
        spec = CreateRun(script=RunScript(pending_seconds=1), sink=sink(receiver))
        run_id = control.create_run(spec)
        assert control.set_push_faults(run_id, PushFaults(lost=True)) == PushFaults(lost=True)
        other = control.create_run(spec)
        with pytest.raises(ControlError, match="404"):
            control.set_push_faults("nope", PushFaults())
        raw = httpx.post(
            f"{fake.root_url}/_fake/runs/{other}/push-faults", json={"nope": 1}, trust_env=False
        )
        assert raw.status_code == 400
        clock.advance(1)
        wait_pushes(fake, other, 2)
        assert [r.note for r in wait_pushes(fake, run_id, 1)] == ["lost"]
        assert all(isinstance(p, PushRecord) for p in control.pushes())
        assert len(receiver.requests) == 2


def test_start_refuses_a_webhook_sink_without_url(fake_intuned: FakeIntunedHandle) -> None:
    with httpx.Client(base_url=fake_intuned.base_url, trust_env=False) as client:
        resp = client.post(
            f"/{FAKE_WORKSPACE_ID}/projects/{PROJECT}/run/start",
            json={"api": "a", "parameters": {}, "sink": {"type": "webhook", "headers": {"a": 1}}},
            headers={"x-api-key": FAKE_API_KEY},
        )
    assert resp.status_code == 400
    assert "sink.url" in resp.json()["message"] and "sink.headers" in resp.json()["message"]
