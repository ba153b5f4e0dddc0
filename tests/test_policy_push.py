"""Start-and-watch's pure parts: the run's own deadline, the poll curve of a run expecting a push,
and the settings that configure them (each refused with its variable's name when malformed)."""

from __future__ import annotations

import pytest

from relay.errors import ConfigError
from relay.policy import run_deadline_seconds, watch_poll_interval
from relay.settings import Settings
from tests.support.relay_fixtures import base_env

POLL, FALLBACK = (3.0, 30.0), (60.0, 300.0)


@pytest.mark.parametrize(
    ("request_timeout", "retry", "seconds"),
    [
        (None, None, 600 * 3 + 900),  # Intuned's defaults: 600 s x 3 attempts
        (120, {"maximumAttempts": 2}, 120 * 2 + 900),
        (120, {}, 120 * 3 + 900),
        (0, {"maximumAttempts": 0}, 600 * 3 + 900),  # unusable values count as the defaults
        ("600", {"maximumAttempts": True}, 600 * 3 + 900),
        (1.5, {"maximumAttempts": 4}, 1.5 * 4 + 900),
    ],
)
def test_a_started_runs_deadline_is_request_timeout_times_attempts_plus_margin(
    request_timeout: object, retry: object, seconds: float
) -> None:
    assert run_deadline_seconds(request_timeout, retry, 900.0) == seconds


def test_a_run_expecting_a_push_is_polled_on_the_fallback_curve_until_the_push() -> None:
    def grow(current: float, *, px: bool, pg: bool) -> float:
        return watch_poll_interval(
            current, expects_push=px, pushed=pg, poll=POLL, fallback=FALLBACK
        )

    curve = [grow(0.0, px=True, pg=False)]
    while len(curve) < 6:
        curve.append(grow(curve[-1], px=True, pg=False))
    assert curve == [60.0, 90.0, 135.0, 202.5, 300.0, 300.0]
    # After a push (and for runs registered by id) the normal curve applies.
    assert grow(0.0, px=True, pg=True) == 3.0
    assert grow(0.0, px=False, pg=False) == 3.0
    assert grow(30.0, px=True, pg=True) == 30.0


def env(**changes: str) -> dict[str, str]:
    return {**base_env("redis://127.0.0.1:1/0", "http://127.0.0.1:9"), **changes}


def test_push_settings_default_and_parse() -> None:
    s = Settings.from_env(env())
    assert s.public_url is None
    assert (s.push_fallback_interval, s.push_fallback_max_interval) == (60.0, 300.0)
    assert s.run_deadline_margin == 900.0
    s = Settings.from_env(
        env(
            RELAY_PUBLIC_URL="https://relay.example.com/base/",
            RELAY_PUSH_FALLBACK_INTERVAL="2s",
            RELAY_PUSH_FALLBACK_MAX_INTERVAL="3s",
            RELAY_RUN_DEADLINE_MARGIN="1m",
        )
    )
    assert s.public_url == "https://relay.example.com/base"
    assert (s.push_fallback_interval, s.push_fallback_max_interval) == (2.0, 3.0)
    assert s.run_deadline_margin == 60.0


@pytest.mark.parametrize(
    ("variable", "changes"),
    [
        ("RELAY_PUBLIC_URL", {"RELAY_PUBLIC_URL": "relay.example.com"}),
        ("RELAY_PUBLIC_URL", {"RELAY_PUBLIC_URL": "https://relay.example.com/?x=1"}),
        ("RELAY_PUBLIC_URL", {"RELAY_PUBLIC_URL": "ftp://relay.example.com"}),
        ("RELAY_PUSH_FALLBACK_INTERVAL", {"RELAY_PUSH_FALLBACK_INTERVAL": "soon"}),
        ("RELAY_PUSH_FALLBACK_MAX_INTERVAL", {"RELAY_PUSH_FALLBACK_MAX_INTERVAL": "30s"}),
        ("RELAY_RUN_DEADLINE_MARGIN", {"RELAY_RUN_DEADLINE_MARGIN": "0s"}),
    ],
)
def test_malformed_push_settings_name_their_variable(
    variable: str, changes: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env(**changes))
    assert err.value.variable == variable
