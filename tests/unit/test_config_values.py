"""Settings' own syntax: strict, and every refusal names its variable."""

from __future__ import annotations

import pytest

from relay.config_values import parse_schedule
from relay.errors import ConfigError


def test_a_schedule_is_delays_in_order() -> None:
    assert parse_schedule("50ms, 5s,5m,2h", name="S") == (0.05, 5.0, 300.0, 7200.0)


@pytest.mark.parametrize("text", ["", " ", "5s,,5m", "5s,", ",5s", "5s, ,5m", "5s,soon"])
def test_a_schedule_with_an_empty_or_unknown_item_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_RETRY_SCHEDULE"):
        parse_schedule(text, name="RELAY_RETRY_SCHEDULE")
