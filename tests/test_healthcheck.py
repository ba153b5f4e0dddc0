"""``relay check`` (the image's HEALTHCHECK) probes whatever relay command the container runs.

Real processes: a worker, an API and ``relay up`` are started and probed by pid, as the image
probes tini's child; a process that is not the relay, and a stopped one, are unhealthy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle
from relay.healthcheck import children, is_wrapper, role_of
from tests.support.processes import RelayProcess, clean_env
from tests.support.relay_fixtures import base_env
from tests.support.reliability import StartApi
from tests.support.workers import StartWorker

ROOT = Path(__file__).resolve().parents[1]


def relay_check(pid: int, env: dict[str, str], *, until_healthy: float = 0.0) -> tuple[int, str]:
    """Run ``relay check --pid <pid>``; retry while unhealthy for up to ``until_healthy`` s."""
    deadline = time.monotonic() + until_healthy
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "relay", "check", "--pid", str(pid)],
            env=clean_env(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        output = result.stdout + result.stderr
        if result.returncode == 0 or time.monotonic() >= deadline:
            return result.returncode, output
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/app/.venv/bin/python", "/app/.venv/bin/relay", "up"], "up"),
        (["/usr/bin/python3", "-m", "relay", "worker"], "worker"),
        (["relay", "api"], "api"),
        (["relay", "api", "--check"], None),
        (["relay", "check"], None),
        (["/usr/bin/tini", "--", "relay", "worker"], "worker"),
        (["python", "-m", "pytest", "relay"], None),
        (["redis-server", "*:6379"], None),
    ],
)
def test_the_role_is_read_from_the_command_line(argv: list[str], role: str | None) -> None:
    assert role_of(argv) == role


@pytest.mark.parametrize(
    ("argv", "wrapper"),
    [
        (["/usr/bin/tini", "--", "relay", "up"], True),
        (["/app/.venv/bin/python", "/app/.venv/bin/relay", "up"], False),
        (["/usr/bin/python3.11", "-m", "relay", "api"], False),
        (["relay", "worker"], False),
        (["python3", "-c", "...", "/usr/bin/python3", "-m", "relay", "worker"], True),
    ],
)
def test_a_wrapper_is_told_from_the_relay_itself(argv: list[str], wrapper: bool) -> None:
    assert is_wrapper(argv) is wrapper


def test_a_worker_is_healthy_while_it_runs_and_not_after(
    start_worker: StartWorker, relay_env: dict[str, str]
) -> None:
    worker = start_worker()
    code, output = relay_check(worker.pid, relay_env, until_healthy=15)
    assert code == 0, output
    assert f"relay worker (pid {worker.pid}) is healthy" in output
    worker.terminate()
    code, output = relay_check(worker.pid, relay_env)
    assert code == 1
    assert "no relay up, api or worker process" in output


def test_an_api_is_probed_on_its_port(start_api: StartApi, relay_env: dict[str, str]) -> None:
    api = start_api()
    env = {**relay_env, "RELAY_PORT": str(api.port)}
    code, output = relay_check(api.proc.pid, env)
    assert code == 0, output
    assert f"relay api (pid {api.proc.pid}) is healthy" in output
    # The same process judged against a port where nothing answers: unhealthy, and says so.
    code, output = relay_check(api.proc.pid, {**relay_env, "RELAY_PORT": str(free_port())})
    assert code == 1
    assert "/healthz does not answer" in output


def test_up_is_healthy_when_its_api_and_worker_are(
    fake_intuned: FakeIntunedHandle, tmp_path: Path
) -> None:
    port = free_port()
    env = base_env("unused", fake_intuned.base_url)
    del env["REDIS_URL"]  # the embedded Redis: the check reads the worker's REDIS_URL itself
    env.update(RELAY_REDIS_DIR=str(tmp_path / "redis"), RELAY_HOST="127.0.0.1")
    env["RELAY_PORT"] = str(port)
    up = RelayProcess(["up"], env, tmp_path / "up.log")
    try:
        up.wait_for_log("relay: up;", timeout=45)
        code, output = relay_check(up.pid, env, until_healthy=15)
        assert code == 0, output + up.tail()
        assert f"relay up (pid {up.pid}) is healthy" in output
        assert "redis://" not in output
    finally:
        assert up.stop() == 0


def test_a_process_that_is_not_the_relay_is_unhealthy(relay_env: dict[str, str]) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        code, output = relay_check(sleeper.pid, relay_env)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert code == 1
    assert f"no relay up, api or worker process at or below pid {sleeper.pid}" in output


def test_a_wrapper_naming_the_relay_is_looked_through(
    relay_env: dict[str, str], tmp_path: Path
) -> None:
    """As with ``tini -- relay worker`` in the image: the wrapper's own command line names the
    relay, but the probe reports (and reads the health of) the relay process under it."""
    wrapper_code = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    log = (tmp_path / "wrapped.log").open("wb")
    wrapper = subprocess.Popen(
        [sys.executable, "-c", wrapper_code, sys.executable, "-m", "relay", "worker"],
        env=clean_env(relay_env),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        code, output = relay_check(wrapper.pid, relay_env, until_healthy=20)
        assert code == 0, output
        assert "relay worker (pid" in output
        assert f"(pid {wrapper.pid})" not in output, "the wrapper is not the worker"
    finally:
        for pid in children(wrapper.pid):  # the worker first: the wrapper forwards nothing
            os.kill(pid, signal.SIGTERM)
        wrapper.wait(30)
        log.close()
