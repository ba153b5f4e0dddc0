"""Start-and-watch end to end over sockets: a real ``relay api`` (Intuned's sink reaches it), a
worker in the test's loop, the fake Intuned pushing its sink payload, and a receiver.

Default poll settings (3 s growing to 30 s, push fallback 60 s) unless a test says otherwise. The
fake runs on a manual clock: a "20 s run" ends when the test moves the clock by 20 s, so the test
does not wait for it; the relay's own schedule runs on real time. Counts are what is pinned:
Intuned result calls per run (the fake's ``polls``) and webhooks received.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle, PushFaults, RunScript
from tests.support.intuned_fixtures import MakeFake, ManualClock
from tests.support.processes import RelayProcess
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import AUTH_ALPHA, wait_until
from tests.support.workers import StartInprocWorker

DEFAULT_POLLING = {
    "RELAY_POLL_INTERVAL": "3s",
    "RELAY_POLL_MAX_INTERVAL": "30s",
    "RELAY_PUSH_FALLBACK_INTERVAL": "60s",
    "RELAY_PUSH_FALLBACK_MAX_INTERVAL": "5m",
}


@dataclass
class Story:
    """What every test here drives: the API process (its base URL is RELAY_PUBLIC_URL), the fake
    on its manual clock, the receiver, and a way to start the worker."""

    url: str
    http: httpx.AsyncClient
    fake: FakeIntunedHandle
    clock: ManualClock
    receiver: ReceiverHandle
    env: dict[str, str]
    start_worker: StartInprocWorker

    async def worker(self, **overrides: str) -> None:
        """A worker in the test's loop with the story's settings (and ``overrides``)."""
        await self.start_worker(**{**self.env, **overrides})

    async def start(self, key: str, path: str, **extra: Any) -> dict[str, Any]:
        """POST /v1/runs (201), then wait for the run's first poll."""
        body = {"projectName": "demo-project", "callbackUrl": self.receiver.url(path), "api": "a"}
        body |= {"parameters": {}, **extra}
        resp = await self.http.post(
            "/v1/runs", json=body, headers={**AUTH_ALPHA, "Idempotency-Key": key}
        )
        assert resp.status_code == 201, resp.text
        run_id = resp.json()["runId"]
        await wait_until(lambda: self.calls(run_id) >= 1, timeout=10)
        return dict(resp.json())

    def calls(self, run_id: str) -> int:
        """Intuned result calls the fake answered for the run."""
        return self.fake.state.run_stats(run_id).polls

    async def push(self, run_id: str, n: int) -> None:
        """``n`` concurrent pushes with the run's own sink URL and secret header: all 202."""
        sink = self.fake.state.run_stats(run_id).sink
        assert sink is not None
        answers = await asyncio.gather(
            *(self.http.post(sink["url"], json={"n": i}, headers=sink["headers"]) for i in range(n))
        )
        assert {a.status_code for a in answers} == {202}

    async def push_changes_nothing(self, run_id: str, n: int) -> None:
        """``n`` pushes after the run's end: no Intuned call, no second webhook."""
        calls = self.calls(run_id)
        await self.push(run_id, n)
        await asyncio.sleep(1.0)
        assert self.calls(run_id) == calls
        assert len(self.receiver.requests) == 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake_intuned(make_fake_intuned: MakeFake, clock: ManualClock) -> FakeIntunedHandle:
    """The fake on a manual clock; runs started through it end 20 s (fake time) after start."""
    fake = make_fake_intuned(clock=clock)
    fake.state.configure(
        default_script=RunScript(pending_seconds=5, started_seconds=15, result={"rows": 3})
    )
    return fake


@pytest.fixture
def api_overrides() -> dict[str, str]:
    """Settings of the API process beyond the defaults (a test parametrizes it)."""
    return {}


@pytest.fixture
async def story(
    relay_env: dict[str, str],
    api_overrides: dict[str, str],
    fake_intuned: FakeIntunedHandle,
    clock: ManualClock,
    receiver: ReceiverHandle,
    start_inproc_worker: StartInprocWorker,
    tmp_path: Path,
) -> Any:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**relay_env, **DEFAULT_POLLING, **api_overrides}
    env |= {"RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port), "RELAY_PUBLIC_URL": url}
    proc = RelayProcess(["api"], env, tmp_path / "api.log")
    try:
        proc.wait_http(url + "/healthz", timeout=60)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Story(url, http, fake_intuned, clock, receiver, env, start_inproc_worker)
    finally:
        proc.stop()


async def test_a_run_started_through_the_relay_is_delivered_by_push_for_few_calls(
    story: Story,
) -> None:
    await story.worker()
    out = await story.start("push-1", "/ok/push", metadata={"n": 1})
    run_id = out["runId"]
    story.clock.advance(20)  # the run ends; the fake pushes its sink payload to the relay
    [req] = await story.receiver.wait_for_async(1, timeout=30)
    event = json.loads(req.body)
    assert event["type"] == "run.completed"
    assert event["data"]["runId"] == run_id and event["data"]["result"] == {"rows": 3}
    assert event["data"]["metadata"] == {"n": 1}
    assert event["data"]["subscriptionId"] == out["subscription"]["id"]
    [push] = story.fake.state.pushes(run_id)
    assert push.status_code == 202
    assert story.calls(run_id) <= 3
    await story.push_changes_nothing(run_id, 1)  # a late duplicate


async def test_a_lost_push_is_caught_by_the_fallback_poll(story: Story) -> None:
    story.fake.state.configure(push_faults=PushFaults(lost=True))
    await story.worker(RELAY_PUSH_FALLBACK_INTERVAL="2s", RELAY_PUSH_FALLBACK_MAX_INTERVAL="3s")
    run_id = (await story.start("lost-1", "/ok/lost"))["runId"]
    story.clock.advance(20)
    [req] = await story.receiver.wait_for_async(1, timeout=20)
    assert json.loads(req.body)["type"] == "run.completed"
    assert [p.note for p in story.fake.state.pushes(run_id)] == ["lost"]
    assert story.calls(run_id) >= 2


async def test_a_flood_of_pushes_costs_one_intuned_call_per_burst(story: Story) -> None:
    await story.worker()
    run_id = (await story.start("flood-1", "/ok/flood"))["runId"]
    before = story.calls(run_id)
    # While the run is still going: 50 pushes at once make one poll (it answers "started").
    await story.push(run_id, 50)
    await wait_until(lambda: story.calls(run_id) == before + 1, timeout=10)
    await asyncio.sleep(0.5)
    assert story.calls(run_id) == before + 1
    story.clock.advance(20)  # the real push arrives; the webhook follows
    await story.receiver.wait_for_async(1, timeout=30)
    await story.push_changes_nothing(run_id, 50)  # once the run is terminal, a flood costs nothing


async def test_duplicated_and_early_pushes_deliver_once(story: Story) -> None:
    # The push comes with 3 copies, and 2 s (fake time) before the result endpoint shows the
    # end: the first push-triggered poll sees "started", the normal curve finds the end.
    story.fake.state.configure(push_faults=PushFaults(duplicates=3, early_seconds=2))
    await story.worker()
    run_id = (await story.start("dup-1", "/ok/dup"))["runId"]
    story.clock.advance(20)
    await wait_until(lambda: story.calls(run_id) >= 2, timeout=10)
    story.clock.advance(2)
    await story.receiver.wait_for_async(1, timeout=30)
    await asyncio.sleep(1.0)
    assert len(story.receiver.requests) == 1
    assert len([p for p in story.fake.state.pushes(run_id) if p.status_code == 202]) == 4
    assert story.calls(run_id) <= 4


@pytest.mark.parametrize("api_overrides", [{"RELAY_RUN_DEADLINE_MARGIN": "1s"}])
async def test_a_run_started_through_the_relay_ends_its_watch_at_its_own_deadline(
    story: Story,
) -> None:
    # requestTimeout 1 s x 1 attempt + a 1 s margin, while RELAY_WATCH_TIMEOUT stays 1 h.
    await story.worker(RELAY_PUSH_FALLBACK_INTERVAL="1s")
    out = await story.start(
        "deadline-1", "/ok/deadline", requestTimeout=1, retry={"maximumAttempts": 1}
    )
    [req] = await story.receiver.wait_for_async(1, timeout=20)
    event = json.loads(req.body)
    assert event["type"] == "run.watch_failed"
    assert event["data"]["failure"]["code"] == "watch_timeout"
    assert event["data"]["runId"] == out["runId"]


async def test_headers_of_a_start_are_delivered_and_never_sent_to_intuned(story: Story) -> None:
    await story.worker()
    out = await story.start("hdr-1", "/ok/hdr", headers={"X-Tenant-Ref": "acme-7"})
    run_id = out["runId"]
    [logged] = [s for s in story.fake.state.start_log() if s["runId"] == run_id]
    assert "headers" not in logged["body"] and logged["body"]["api"] == "a"
    story.clock.advance(20)
    [req] = await story.receiver.wait_for_async(1, timeout=30)
    assert req.headers["x-tenant-ref"] == "acme-7"
    assert json.loads(req.body)["data"]["runId"] == run_id


async def test_a_start_with_forbidden_headers_is_refused_before_anything_starts(
    story: Story,
) -> None:
    body = {"projectName": "demo-project", "callbackUrl": story.receiver.url("/x"), "api": "a"}
    body |= {"parameters": {}, "headers": {"Webhook-Signature": "forged"}}
    before = len(story.fake.state.start_log())
    resp = await story.http.post(
        "/v1/runs", json=body, headers={**AUTH_ALPHA, "Idempotency-Key": "hdr-bad"}
    )
    assert resp.status_code == 400, resp.text
    assert "Webhook-Signature" in resp.json()["detail"]
    assert len(story.fake.state.start_log()) == before
