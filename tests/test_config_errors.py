"""Bad configuration: every command prints one line naming the variable and exits non-zero."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from relay.embedded_redis import free_port
from tests.support.processes import RelayProcess
from tests.support.relay_fixtures import base_env

COMMANDS = [["api"], ["worker"], ["up"]]
# (variable named in the error, environment change)
CASES: dict[str, tuple[str, dict[str, str | None]]] = {
    "missing-intuned-key": ("INTUNED_API_KEY", {"INTUNED_API_KEY": None}),
    "malformed-retry-schedule": ("RELAY_RETRY_SCHEDULE", {"RELAY_RETRY_SCHEDULE": "5s,soon,1h"}),
    "unreachable-redis": ("REDIS_URL", {}),
    "placeholder-workspace": (
        "INTUNED_WORKSPACE_ID",
        {"INTUNED_WORKSPACE_ID": "00000000-0000-0000-0000-000000000000"},
    ),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_bad_configuration_is_one_line_naming_the_variable(
    command: list[str], case: str, tmp_path: Path
) -> None:
    variable, change = CASES[case]
    # Nothing listens on this port: Redis is unreachable unless the error comes earlier.
    env = base_env(f"redis://127.0.0.1:{free_port()}/0", "http://127.0.0.1:9/api/v1/workspace")
    env["RELAY_REDIS_DIR"] = str(tmp_path / "redis")
    env["RELAY_PORT"] = str(free_port())
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    proc = RelayProcess(command, env, tmp_path / "out.log")
    code = proc.wait(20)
    output = proc.log().strip()
    assert code != 0
    assert len(output.splitlines()) == 1, output
    assert output.startswith("relay: configuration error: ")
    assert variable in output
    assert not (tmp_path / "redis").exists()


@pytest.mark.parametrize(
    ("command", "variable"),
    [(["up"], "RELAY_PORT"), (["api"], "RELAY_PORT"), (["worker"], "RELAY_WORKER_METRICS_PORT")],
    ids=["up", "api", "worker"],
)
def test_a_taken_port_is_named(
    command: list[str], variable: str, redis_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = base_env(redis_url, "http://127.0.0.1:9/api/v1/workspace")
        env.update(RELAY_HOST="127.0.0.1", RELAY_PORT=port, RELAY_WORKER_METRICS_PORT=port)
        env["RELAY_REDIS_DIR"] = str(tmp_path / "redis")
        proc = RelayProcess(command, env, tmp_path / "out.log")
        assert proc.wait(20) == 2
    [line] = proc.log().strip().splitlines()
    assert line.startswith(f"relay: configuration error: {variable} {port} cannot be used")
    assert not (tmp_path / "redis").exists()
