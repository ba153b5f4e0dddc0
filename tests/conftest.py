"""Test harness: real Redis, fake Intuned and webhook receivers, all started by the suite itself.

The suite runs in parallel test processes (pytest-xdist, ``-n auto`` in pyproject.toml). Every
session fixture (the Redis server above all) is per process, so tests in different processes
never share a Redis, a fake Intuned or a receiver; a test must never rely on running alone.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.intuned_fixtures",
    "tests.support.receiver_fixtures",
    "tests.support.relay_fixtures",
    "tests.support.workers",
    "tests.support.store_helpers",
    "tests.support.e2e",
    "tests.support.api_module_fixtures",
    "tests.support.reliability",
]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one test process more than CPUs. Much of a test's time is spent waiting on a
    worker process, a retry delay or a receiver, so a spare process keeps both cores busy
    (measured in bench/NOTES.md, "The suite's wall time"). PYTEST_XDIST_AUTO_NUM_WORKERS wins."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    return int(chosen) if chosen.isdigit() else (os.cpu_count() or 1) + 1
