"""`relay up` as a user runs it: no REDIS_URL, an embedded Redis under RELAY_REDIS_DIR, API and
worker as children; subscriptions survive a restart; a dead child stops everything."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from relay.embedded_redis import LOCK_FILE, free_port
from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.processes import RelayProcess, children_of, cmdline
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, base_env


def up_env(fake: FakeIntunedHandle, data_dir: Path, port: int) -> dict[str, str]:
    env = base_env("unused", fake.base_url)
    del env["REDIS_URL"]
    env.update(RELAY_REDIS_DIR=str(data_dir), RELAY_HOST="127.0.0.1", RELAY_PORT=str(port))
    return env


def wait_state(api: httpx.Client, sid: str, state: str, timeout: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        view = api.get(f"/v1/subscriptions/{sid}").raise_for_status().json()
        if view["state"] == state or time.monotonic() > deadline:
            assert view["state"] == state, view
            return dict(view)
        time.sleep(0.1)


def port_open(url: str) -> bool:
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_up_runs_everything_and_subscriptions_survive_a_restart(
    fake_intuned: FakeIntunedHandle, receiver: ReceiverHandle, tmp_path: Path
) -> None:
    data_dir, port = tmp_path / "redis-data", free_port()
    env = up_env(fake_intuned, data_dir, port)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH_ALPHA, timeout=5)

    # First life: a subscription is registered over HTTP and delivered, signed.
    first = RelayProcess(["up"], env, tmp_path / "up-1.log")
    try:
        first.wait_for_log("relay: up;", timeout=45)
        assert "embedded Redis on redis://127.0.0.1:" in first.log()
        secret = api.get("/v1/signing-secret").raise_for_status().json()["secret"]
        run_id = fake_intuned.state.create_run(RunScript(pending_polls=1, result={"n": 1}))
        body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": receiver.url("/ok")}
        sub = api.post("/v1/subscriptions", json=body).raise_for_status().json()
        [req] = receiver.wait_for(1, timeout=15)
        assert verify(req, secret)["data"]["subscriptionId"] == sub["id"]
        wait_state(api, sub["id"], "delivered")
    finally:
        assert first.stop() == 0, first.tail()
    assert (data_dir / "appendonlydir").is_dir()
    redis_url = first.log().split("embedded Redis on ")[1].split()[0]
    assert not port_open(redis_url), "the embedded Redis stops with relay up"

    # Second life: the same data directory; the subscription and its history are still there.
    again = RelayProcess(["up"], env, tmp_path / "up-2.log")
    try:
        again.wait_for_log("relay: up;", timeout=45)
        view = api.get(f"/v1/subscriptions/{sub['id']}").raise_for_status().json()
        assert view["state"] == "delivered"
        assert [a["statusCode"] for a in view["attempts"]] == [200]
        assert api.get("/v1/signing-secret").json()["secret"] == secret
    finally:
        assert again.stop() == 0, again.tail()
        api.close()
    assert ALPHA_KEY not in again.log() + first.log()
    assert len(receiver.requests) == 1


def test_up_owns_its_data_dir_and_stops_everything_when_a_child_dies(
    fake_intuned: FakeIntunedHandle, tmp_path: Path
) -> None:
    data_dir = tmp_path / "redis-data"
    env = up_env(fake_intuned, data_dir, free_port())
    up = RelayProcess(["up"], env, tmp_path / "up.log")
    try:
        up.wait_for_log("relay: up;", timeout=45)
        assert (data_dir / LOCK_FILE).exists()
        # A second `relay up` on the same data directory is refused, naming the variable.
        second = RelayProcess(["up"], {**env, "RELAY_PORT": str(free_port())}, tmp_path / "2.log")
        assert second.wait(15) == 2
        assert "RELAY_REDIS_DIR" in second.log() and "in use" in second.log()

        # When a child dies on its own, `relay up` stops the rest and exits non-zero.
        redis_url = up.log().split("embedded Redis on ")[1].split()[0]
        children = children_of(up.pid)
        [worker] = [p for p in children if "relay worker" in cmdline(p)]
        [api] = [p for p in children if "relay api" in cmdline(p)]
        os.kill(worker, signal.SIGKILL)
        assert up.wait(20) != 0
        assert "the worker process exited" in up.log()
        assert not port_open(redis_url), "the embedded Redis must stop with relay up"
        assert "relay api" not in cmdline(api), "the API must stop with relay up"
    finally:
        up.stop()


def test_up_without_intuned_credentials_says_exactly_what_to_set(tmp_path: Path) -> None:
    env = {"RELAY_REDIS_DIR": str(tmp_path / "r"), "RELAY_PORT": str(free_port())}
    proc = RelayProcess(["up"], env, tmp_path / "up.log")
    assert proc.wait(15) == 2
    [line] = proc.log().strip().splitlines()
    for name in ("INTUNED_WORKSPACE_ID=", "INTUNED_API_KEY=", "RELAY_API_KEYS="):
        assert name in line
    assert "relay demo" in line
    assert not (tmp_path / "r").exists(), "nothing may start before the configuration is valid"


@pytest.mark.parametrize("missing", ["INTUNED_API_KEY", "RELAY_API_KEYS"])
def test_up_names_the_one_missing_variable(
    missing: str, fake_intuned: FakeIntunedHandle, tmp_path: Path
) -> None:
    env = up_env(fake_intuned, tmp_path / "r", free_port())
    del env[missing]
    proc = RelayProcess(["up"], env, tmp_path / "up.log")
    assert proc.wait(15) == 2
    [line] = proc.log().strip().splitlines()
    assert line.startswith(f"relay: configuration error: {missing} is not set: {missing}=<")
