"""The bundled fake of Intuned's Run API: server, scripted runs, clock, faults, sinks, control API.

For tests, benchmarks, the demo and ``relay fake-intuned`` only: the relay's API and workers must
never import this package. See ``relay.fake_intuned.server`` for the ways to run it and
``relay.fake_intuned.control`` for the HTTP control API under ``/_fake/``. The package exports
what a user runs and scripts the fake with; what it records (polls, pushes, stats) is read from
``relay.fake_intuned.models``.
"""

from relay.fake_intuned.models import (
    CreateRun,
    FakeConfig,
    Fault,
    PushFaults,
    RateLimitConfig,
    RunScript,
)
from relay.fake_intuned.server import (
    FakeIntuned,
    FakeIntunedHandle,
    FakeIntunedServer,
    run_fake_intuned,
    start_in_thread,
)

__all__ = [
    "CreateRun",
    "FakeConfig",
    "FakeIntuned",
    "FakeIntunedHandle",
    "FakeIntunedServer",
    "Fault",
    "PushFaults",
    "RateLimitConfig",
    "RunScript",
    "run_fake_intuned",
    "start_in_thread",
]
