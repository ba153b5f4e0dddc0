"""RELAY_WORKER_PROCESSES and RELAY_API_WORKERS: N real processes under one command.

``relay worker`` with N > 1 supervises N single-process workers (each with its own metrics
port); SIGTERM stops them all, a child killed on its own stops the rest with a non-zero code, as
``relay up`` does. ``relay api`` with RELAY_API_WORKERS=N runs granian with N worker processes.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from relay.embedded_redis import free_port
from relay.errors import ConfigError
from relay.settings import Settings, usable_cpus
from relay.supervisor import relay_commands
from tests.support.processes import RelayProcess, children_of, cmdline


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for kid in children_of(pid):
        out += [kid, *descendants(kid)]
    return out


def worker_children(pid: int) -> list[int]:
    return [p for p in children_of(pid) if "relay worker" in cmdline(p)]


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def two_free_ports() -> int:
    """A port p with p and p + 1 both free on 0.0.0.0 right now."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def env_settings(relay_env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**relay_env, **extra})


def test_processes_default_to_one_and_zero_means_one_per_cpu(relay_env: dict[str, str]) -> None:
    settings = env_settings(relay_env)
    assert (settings.worker_process_count, settings.api_worker_count) == (1, 1)
    auto = env_settings(relay_env, RELAY_WORKER_PROCESSES="0", RELAY_API_WORKERS="0")
    assert auto.worker_process_count == auto.api_worker_count == usable_cpus() >= 1
    three = env_settings(relay_env, RELAY_WORKER_PROCESSES="3", RELAY_API_WORKERS="2")
    assert (three.worker_process_count, three.api_worker_count) == (3, 2)


@pytest.mark.parametrize("name", ["RELAY_WORKER_PROCESSES", "RELAY_API_WORKERS"])
@pytest.mark.parametrize("value", ["-1", "65", "two"])
def test_bad_process_counts_are_refused_naming_the_variable(
    relay_env: dict[str, str], name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as err:
        env_settings(relay_env, **{name: value})
    assert name in str(err.value)


def test_worker_children_are_single_processes_with_their_own_metrics_ports() -> None:
    commands = relay_commands(api=True, workers=3, metrics_port=9100)
    assert list(commands) == ["api", "worker-1", "worker-2", "worker-3"]
    assert commands["api"].args == ("api",) and not commands["api"].env
    ports = [commands[f"worker-{i}"].env["RELAY_WORKER_METRICS_PORT"] for i in (1, 2, 3)]
    assert ports == ["9100", "9101", "9102"]
    assert all(commands[f"worker-{i}"].env["RELAY_WORKER_PROCESSES"] == "1" for i in (1, 2, 3))
    # One worker keeps today's name; metrics off stays off (no port is handed out).
    [(name, only)] = relay_commands(api=False, workers=1, metrics_port=0).items()
    assert name == "worker" and "RELAY_WORKER_METRICS_PORT" not in only.env


def test_worker_processes_run_under_one_supervisor_and_sigterm_stops_all(
    relay_env: dict[str, str], tmp_path: Path
) -> None:
    port = two_free_ports()
    env = {**relay_env, "RELAY_WORKER_PROCESSES": "2", "RELAY_WORKER_METRICS_PORT": str(port)}
    proc = RelayProcess(["worker"], env, tmp_path / "workers.log")
    try:
        proc.wait_for_log("relay: 2 worker processes", timeout=30)
        wait_until(lambda: proc.log().count("worker_started") == 2, 30, proc.tail())
        kids = worker_children(proc.pid)
        assert len(kids) == 2, proc.tail()
        for p in (port, port + 1):  # each child serves its own /metrics
            assert "relay_" in httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5).text
        assert proc.stop() == 0, proc.tail()
        assert proc.log().count("worker_stopped") == 2, proc.tail()
        assert all("relay worker" not in cmdline(k) for k in kids)
    finally:
        proc.stop()


def test_a_killed_worker_process_stops_the_others_with_a_non_zero_code(
    relay_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**relay_env, "RELAY_WORKER_PROCESSES": "2"}
    proc = RelayProcess(["worker"], env, tmp_path / "workers.log")
    try:
        wait_until(lambda: proc.log().count("worker_started") == 2, 45, "workers did not start")
        first, second = worker_children(proc.pid)
        os.kill(first, signal.SIGKILL)
        assert proc.wait(30) != 0
        assert "process exited with code -9; stopping" in proc.log(), proc.tail()
        assert "relay worker" not in cmdline(second), "the other worker must stop too"
        assert "worker_stopped" in proc.log(), "the other worker stops gracefully"
    finally:
        proc.stop()


def test_api_workers_sets_granians_worker_processes(
    relay_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**relay_env, "RELAY_API_WORKERS": "2", "RELAY_HOST": "127.0.0.1"}
    proc = RelayProcess(["api"], {**env, "RELAY_PORT": str(port)}, tmp_path / "api.log")
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        wait_until(lambda: len(descendants(proc.pid)) >= 2, 30, "granian workers missing")
        assert len(descendants(proc.pid)) == 2, [cmdline(p) for p in descendants(proc.pid)]
        assert proc.stop() == 0, proc.tail()
    finally:
        proc.stop()
