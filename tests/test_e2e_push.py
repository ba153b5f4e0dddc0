"""Start-and-watch end to end over sockets: a real ``relay api`` (Intuned's sink reaches it), a real
worker, the fake Intuned pushing its sink payload, and a receiver.

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
from tests.support.relay_fixtures import AUTH_ALPHA, StartWorker, wait_until

DEFAULT_POLLING = {
    "RELAY_POLL_INTERVAL": "3s",
    "RELAY_POLL_MAX_INTERVAL": "30s",
    "RELAY_PUSH_FALLBACK_INTERVAL": "60s",
    "RELAY_PUSH_FALLBACK_MAX_INTERVAL": "5m",
}


@dataclass
class Relay:
    """The API process (its base URL doubles as RELAY_PUBLIC_URL) and an HTTP client to it."""

    url: str
    http: httpx.AsyncClient

    async def start(self, key: str, callback: str, **extra: Any) -> dict[str, Any]:
        body = {"projectName": "demo-project", "callbackUrl": callback, "api": "a"}
        body |= {"parameters": {}, **extra}
        resp = await self.http.post(
            "/v1/runs", json=body, headers={**AUTH_ALPHA, "Idempotency-Key": key}
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


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
def relay_env_push(relay_env: dict[str, str], api_overrides: dict[str, str]) -> dict[str, str]:
    port = free_port()
    return {
        **relay_env,
        **DEFAULT_POLLING,
        **api_overrides,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }


@pytest.fixture
async def relay(relay_env_push: dict[str, str], tmp_path: Path) -> Any:
    proc = RelayProcess(["api"], relay_env_push, tmp_path / "api.log")
    url = relay_env_push["RELAY_PUBLIC_URL"]
    try:
        proc.wait_http(url + "/healthz", timeout=30)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Relay(url, http)
    finally:
        proc.stop()


def result_calls(fake: FakeIntunedHandle, run_id: str) -> int:
    return fake.state.run_stats(run_id).polls


async def first_poll_done(fake: FakeIntunedHandle, run_id: str) -> None:
    await wait_until(lambda: result_calls(fake, run_id) >= 1, timeout=10)


async def test_a_run_started_through_the_relay_is_delivered_by_push_for_few_calls(
    relay: Relay,
    fake_intuned: FakeIntunedHandle,
    clock: ManualClock,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    relay_env_push: dict[str, str],
) -> None:
    start_worker(**relay_env_push)
    out = await relay.start("push-1", receiver.url("/ok/push"), metadata={"n": 1})
    run_id = out["runId"]
    await first_poll_done(fake_intuned, run_id)
    clock.advance(20)  # the run ends; the fake pushes its sink payload to the relay
    [req] = await receiver.wait_for_async(1, timeout=30)
    event = json.loads(req.body)
    assert event["type"] == "run.completed"
    assert event["data"]["runId"] == run_id and event["data"]["result"] == {"rows": 3}
    assert event["data"]["metadata"] == {"n": 1}
    assert event["data"]["subscriptionId"] == out["subscription"]["id"]
    [push] = fake_intuned.state.pushes(run_id)
    assert push.status_code == 202
    assert result_calls(fake_intuned, run_id) <= 3
    # A late duplicate push changes nothing: no poll, no second webhook.
    calls = result_calls(fake_intuned, run_id)
    sink = fake_intuned.state.run_stats(run_id).sink
    assert sink is not None
    resp = await relay.http.post(sink["url"], json={"late": True}, headers=sink["headers"])
    assert resp.status_code == 202
    await asyncio.sleep(1.0)
    assert result_calls(fake_intuned, run_id) == calls
    assert len(receiver.requests) == 1


async def test_a_lost_push_is_caught_by_the_fallback_poll(
    relay: Relay,
    fake_intuned: FakeIntunedHandle,
    clock: ManualClock,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    relay_env_push: dict[str, str],
) -> None:
    fake_intuned.state.configure(push_faults=PushFaults(lost=True))
    fallback = {"RELAY_PUSH_FALLBACK_INTERVAL": "2s", "RELAY_PUSH_FALLBACK_MAX_INTERVAL": "3s"}
    start_worker(**{**relay_env_push, **fallback})
    run_id = (await relay.start("lost-1", receiver.url("/ok/lost")))["runId"]
    await first_poll_done(fake_intuned, run_id)
    clock.advance(20)
    [req] = await receiver.wait_for_async(1, timeout=20)
    assert json.loads(req.body)["type"] == "run.completed"
    assert [p.note for p in fake_intuned.state.pushes(run_id)] == ["lost"]
    assert result_calls(fake_intuned, run_id) >= 2


async def test_a_flood_of_pushes_costs_one_intuned_call_per_burst(
    relay: Relay,
    fake_intuned: FakeIntunedHandle,
    clock: ManualClock,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    relay_env_push: dict[str, str],
) -> None:
    start_worker(**relay_env_push)
    run_id = (await relay.start("flood-1", receiver.url("/ok/flood")))["runId"]
    await first_poll_done(fake_intuned, run_id)
    sink = fake_intuned.state.run_stats(run_id).sink
    assert sink is not None
    before = result_calls(fake_intuned, run_id)

    async def flood(n: int) -> None:
        answers = await asyncio.gather(
            *(
                relay.http.post(sink["url"], json={"n": i}, headers=sink["headers"])
                for i in range(n)
            )
        )
        assert {a.status_code for a in answers} == {202}

    # While the run is still going: 50 pushes at once make one poll (it answers "started").
    await flood(50)
    await wait_until(lambda: result_calls(fake_intuned, run_id) == before + 1, timeout=10)
    await asyncio.sleep(0.5)
    assert result_calls(fake_intuned, run_id) == before + 1
    clock.advance(20)  # the real push arrives; the webhook follows
    await receiver.wait_for_async(1, timeout=30)
    after_end = result_calls(fake_intuned, run_id)
    # Once the run is terminal, a flood costs nothing at all.
    await flood(50)
    await asyncio.sleep(1.0)
    assert result_calls(fake_intuned, run_id) == after_end
    assert len(receiver.requests) == 1


async def test_duplicated_and_early_pushes_deliver_once(
    relay: Relay,
    fake_intuned: FakeIntunedHandle,
    clock: ManualClock,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    relay_env_push: dict[str, str],
) -> None:
    # The push comes with 3 copies, and 2 s (fake time) before the result endpoint shows the
    # end: the first push-triggered poll sees "started", the normal curve finds the end.
    fake_intuned.state.configure(push_faults=PushFaults(duplicates=3, early_seconds=2))
    start_worker(**relay_env_push)
    run_id = (await relay.start("dup-1", receiver.url("/ok/dup")))["runId"]
    await first_poll_done(fake_intuned, run_id)
    clock.advance(20)
    await wait_until(lambda: result_calls(fake_intuned, run_id) >= 2, timeout=10)
    clock.advance(2)
    await receiver.wait_for_async(1, timeout=30)
    await asyncio.sleep(1.0)
    assert len(receiver.requests) == 1
    assert len([p for p in fake_intuned.state.pushes(run_id) if p.status_code == 202]) == 4
    assert result_calls(fake_intuned, run_id) <= 4


@pytest.mark.parametrize("api_overrides", [{"RELAY_RUN_DEADLINE_MARGIN": "1s"}])
async def test_a_run_started_through_the_relay_ends_its_watch_at_its_own_deadline(
    relay: Relay,
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    relay_env_push: dict[str, str],
) -> None:
    # requestTimeout 1 s x 1 attempt + a 1 s margin, while RELAY_WATCH_TIMEOUT stays 1 h.
    start_worker(**{**relay_env_push, "RELAY_PUSH_FALLBACK_INTERVAL": "1s"})
    out = await relay.start(
        "deadline-1",
        receiver.url("/ok/deadline"),
        requestTimeout=1,
        retry={"maximumAttempts": 1},
    )
    [req] = await receiver.wait_for_async(1, timeout=20)
    event = json.loads(req.body)
    assert event["type"] == "run.watch_failed"
    assert event["data"]["failure"]["code"] == "watch_timeout"
    assert event["data"]["runId"] == out["runId"]
