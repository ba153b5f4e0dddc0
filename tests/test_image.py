"""The container image, built and run: ``pytest -m slow tests/test_image.py``.

Wherever docker or podman can build and run containers: build the Dockerfile, run the default
``relay up`` with a ``/data`` volume and the bundled fake Intuned from the same image, wait for
``/readyz``, deliver one signed webhook from a scripted fake run to a receiver on the host, run
the HEALTHCHECK's ``relay check`` inside, then ``stop`` (SIGTERM) and require exit 0 within
``RELAY_SHUTDOWN_GRACE``. The image size is printed. Marked slow (a build takes about a minute),
so ``.ci/run`` does not run it; elsewhere it skips with a one-line reason.

Containers share the host's network namespace and listen on loopback only; every container and
volume it creates is removed by name at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relay.embedded_redis import free_port
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GRACE = 20.0  # RELAY_SHUTDOWN_GRACE's default, which the image keeps
BASES = ("python:3.11-slim-bookworm", "ghcr.io/astral-sh/uv:0.13.9")
# Where the plain engine cannot run containers (nested, cgroup v1/v2 hybrid, low rlimits),
# podman with runc and cgroupfs often can.
PODMAN_FALLBACK = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
SAFE_ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


@dataclass
class Engine:
    """How to build and run containers on this machine."""

    argv: list[str]  # the engine and its global options
    run_options: list[str]
    build_options: list[str]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return ((result.stderr or result.stdout).strip().splitlines() or ["no output"])[-1]


def has_bases(argv: list[str]) -> str | None:
    """None when the Dockerfile's base images are here (pulled if need be), else why not."""
    for base in BASES:
        if subprocess.run([*argv, "image", "inspect", base], capture_output=True).returncode:
            pulled = subprocess.run(
                [*argv, "pull", base], capture_output=True, text=True, timeout=300
            )
            if pulled.returncode != 0:
                return f"base image {base} is not available: {last_line(pulled)}"
    return None


def find_engine() -> Engine:
    """A docker or podman that can build and run the image here, or pytest.skip saying why."""
    docker, podman = shutil.which("docker"), shutil.which("podman")
    if not docker and not podman:
        pytest.skip("no container engine (docker or podman) on this machine")
    reasons = []
    if docker:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
        if info.returncode == 0:
            missing = has_bases([docker])
            if missing is None:
                return Engine([docker], [], [])
            reasons.append(f"docker: {missing}")
        else:
            reasons.append(f"docker: {last_line(info)}")
    if podman:
        missing = has_bases([podman])
        if missing is not None:
            pytest.skip(f"podman: {missing}")
        for argv, run_options in (([podman], []), ([podman, *PODMAN_FALLBACK], SAFE_ULIMITS)):
            probe = subprocess.run(
                [*argv, "run", "--rm", *run_options, "--network", "none", BASES[0], "true"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if probe.returncode == 0:
                return Engine(argv, run_options, ["--format", "docker", "--isolation", "chroot"])
            reasons.append(f"{' '.join(argv[1:]) or 'podman'}: {last_line(probe)}")
    pytest.skip("cannot run containers here (" + "; ".join(reasons) + ")")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return find_engine()


@pytest.fixture(scope="module")
def image(engine: Engine) -> Iterator[str]:
    tag = f"localhost/intuned-relay:test-{uuid.uuid4().hex[:8]}"
    built = engine("build", *engine.build_options, "-t", tag, str(ROOT), timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    size = json.loads(engine("image", "inspect", tag).stdout)[0]["Size"]
    print(f"\nimage {tag}: {size / 1e6:.0f} MB")
    yield tag
    engine("rmi", "-f", tag)


class Container:
    """One named container of the test; removed at the end whatever happens."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name

    def start(self, image: str, env: dict[str, str], *args: str, volume: str = "") -> None:
        options = [f"--env={k}={v}" for k, v in env.items()]
        if volume:
            options.append(f"--volume={volume}:/data")
        started = self.engine(
            "run", "-d", "--name", self.name, "--network", "host",
            *self.engine.run_options, *options, image, *args,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr

    def logs(self) -> str:
        result = self.engine("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.engine("rm", "-f", "-v", "-t", "0", self.name)  # -v: its anonymous /data too


def wait_http(url: str, container: Container, timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200:\n{container.logs()}"
        time.sleep(0.5)


def test_the_image_runs_up_delivers_a_webhook_and_stops_cleanly(
    engine: Engine, image: str, receiver: ReceiverHandle
) -> None:
    suffix = uuid.uuid4().hex[:8]
    volume = f"relay-test-data-{suffix}"
    fake = Container(engine, f"relay-test-fake-{suffix}")
    relay = Container(engine, f"relay-test-up-{suffix}")
    fake_port, api_port = free_port(), free_port()
    try:
        assert engine("volume", "create", volume).returncode == 0
        fake_env = {"INTUNED_WORKSPACE_ID": FAKE_WORKSPACE_ID, "INTUNED_API_KEY": FAKE_API_KEY}
        fake.start(image, fake_env, "relay", "fake-intuned", "--port", str(fake_port))
        fake_root = f"http://127.0.0.1:{fake_port}"
        relay_env = {
            **fake_env,
            "INTUNED_API_BASE_URL": f"{fake_root}/api/v1/workspace",
            "RELAY_API_KEYS": f"alpha:{ALPHA_KEY}",
            "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
            "RELAY_HOST": "127.0.0.1",
            "RELAY_PORT": str(api_port),
            "RELAY_WORKER_METRICS_PORT": "0",
            "RELAY_POLL_INTERVAL": "200ms",
            "RELAY_POLL_MAX_INTERVAL": "1s",
        }
        relay.start(image, relay_env, volume=volume)  # the image's default command: relay up
        base = f"http://127.0.0.1:{api_port}"
        assert wait_http(f"{base}/readyz", relay).json()["status"] == "ok"
        assert "AOF on, data in /data/redis" in relay.logs()

        # One webhook from a scripted run of the bundled fake, verified on the host.
        run = httpx.post(
            f"{fake_root}/_fake/runs",
            json={"projectName": "image-test", "script": {"result": {"ok": True}}},
            timeout=5,
        )
        assert run.status_code == 201, run.text
        body = {"projectName": "image-test", "runId": run.json()["runId"]}
        with httpx.Client(base_url=base, headers=AUTH_ALPHA, timeout=5) as api:
            secret = api.get("/v1/signing-secret").json()["secret"]
            created = api.post("/v1/subscriptions", json={**body, "callbackUrl": receiver.url()})
        assert created.status_code == 201, created.text
        [request] = receiver.wait_for(1, timeout=60)
        event = verify(request, secret)
        assert event["type"] == "run.completed" and event["data"]["result"] == {"ok": True}

        check = engine("exec", relay.name, "relay", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "relay up (pid" in check.stdout

        # SIGTERM, and SIGKILL only after the grace: exit code 0 means it stopped by itself
        # within RELAY_SHUTDOWN_GRACE (a kill would be 137).
        started = time.monotonic()
        stopped = engine("stop", "-t", str(int(GRACE)), relay.name)
        took = time.monotonic() - started
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(engine("inspect", relay.name).stdout)[0]["State"]
        print(f"relay up: SIGTERM -> exit code {state['ExitCode']} after {took:.1f}s")
        assert state["ExitCode"] == 0, relay.logs()[-3000:]
    finally:
        relay.remove()
        fake.remove()
        engine("volume", "rm", "-f", volume)
