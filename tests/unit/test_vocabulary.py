"""The relay's states, statuses and event types are named once (``relay.model``); the rest agree."""

from __future__ import annotations

from typing import get_args

import pytest

from relay.api.schemas import EventName
from relay.intuned.models import KNOWN_STATUSES
from relay.model import (
    EVENT_FOR_STATUS,
    EVENT_STATUSES,
    FINAL_STATES,
    SUBSCRIBABLE_STATUSES,
    TERMINAL_STATUSES,
    EventType,
    RunStatus,
    SubState,
)
from relay.services.starts import StartEvent
from relay.webhooks.payload import event_type_for_status


def test_the_api_accepts_exactly_the_event_statuses() -> None:
    assert set(EVENT_STATUSES) == TERMINAL_STATUSES
    assert set(get_args(EventName)) == set(SUBSCRIBABLE_STATUSES) == {*TERMINAL_STATUSES, "started"}
    assert set(get_args(StartEvent)) == set(SUBSCRIBABLE_STATUSES)


def test_every_terminal_status_has_its_event_type() -> None:
    assert set(EVENT_FOR_STATUS) == TERMINAL_STATUSES
    assert set(EVENT_FOR_STATUS.values()) == set(EventType) - {
        EventType.WATCH_FAILED,
        EventType.STARTED,
    }
    for status, event in EVENT_FOR_STATUS.items():
        assert event_type_for_status(status) == event == f"run.{status}"


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.STARTED, "paused", ""])
def test_a_non_terminal_status_has_no_event(status: str) -> None:
    with pytest.raises(ValueError, match="not a terminal run status"):
        event_type_for_status(status)


def test_known_statuses_and_final_states() -> None:
    assert frozenset(RunStatus) == KNOWN_STATUSES
    assert SubState.WATCHING not in FINAL_STATES
    assert SubState.DELIVERING not in FINAL_STATES
    assert len(FINAL_STATES) == len(SubState) - 2


def test_the_lua_names_fields_and_states_by_their_python_values() -> None:
    """Scripts are loaded with ``F.STATE``-style names written as the enums' literals; a name
    that is no member fails at load time, not as a nil inside Redis."""
    from relay.store.keys import lua_inline

    lua = "redis.call('HGET', k, F.STATE) == ST.DELIVERING and RF.BODY -- SF.CURRENT"
    assert lua_inline(lua) == "redis.call('HGET', k, 'st') == 'delivering' and 'b' -- 'cur'"
    assert lua_inline("string.sub(x, 1) .. KEYS[1]") == "string.sub(x, 1) .. KEYS[1]"
    with pytest.raises(KeyError):
        lua_inline("F.NO_SUCH_FIELD")
