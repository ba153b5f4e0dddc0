"""The bundled fake of Intuned's Run API: server, scripted runs, clock, faults, sinks, control API.

For tests, benchmarks, the demo and ``relay fake-intuned`` only: the relay's API and workers must
never import this package. See ``relay.fake_intuned.server`` for the ways to run it and
``relay.fake_intuned.control`` for the HTTP control API under ``/_fake/``.
"""

from relay.fake_intuned.models import (
    DEFAULT_PREFIX,
    CreateRun,
    FakeConfig,
    FakeStats,
    Fault,
    PollRecord,
    PushFaults,
    PushRecord,
    RateLimitConfig,
    RunScript,
    RunStats,
)
from relay.fake_intuned.server import (
    FakeIntuned,
    FakeIntunedHandle,
    FakeIntunedServer,
    run_fake_intuned,
    start_in_thread,
)

__all__ = [
    "DEFAULT_PREFIX",
    "CreateRun",
    "FakeConfig",
    "FakeIntuned",
    "FakeIntunedHandle",
    "FakeIntunedServer",
    "FakeStats",
    "Fault",
    "PollRecord",
    "PushFaults",
    "PushRecord",
    "RateLimitConfig",
    "RunScript",
    "RunStats",
    "run_fake_intuned",
    "start_in_thread",
]
