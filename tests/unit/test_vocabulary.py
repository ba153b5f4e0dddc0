"""The relay's states, statuses and event types are named once (``relay.model``); the rest agree."""

from __future__ import annotations

import re
from importlib import resources
from typing import get_args

import pytest

from relay import model
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


def _literal_values(code: str) -> list[str]:
    """The quoted literals of a line of Lua, but the keys of flat reply maps (``{'done', 1}``:
    a key is a reply Struct's field name, not a state)."""

    def values_only(table: re.Match[str]) -> str:
        items = table[1].split(",")
        kept = [i for n, i in enumerate(items) if n % 2 or not re.fullmatch(r"\s*'[^']*'\s*", i)]
        return "{" + ",".join(kept) + "}"

    return re.findall(r"'([^']*)'", re.sub(r"\{([^{}]*)\}", values_only, code))


def test_no_script_spells_a_state_or_an_outcome_as_a_literal() -> None:
    """Scripts name states and outcomes through the enums (``CO.OK``, ``ST.DELIVERING``), so a
    renamed value cannot leave a script answering the old word (a cancel's ``'ok'`` and an
    attempt's ``'stale'`` once were spelled out)."""
    words = {
        m.value
        for enum in (
            model.SubState,
            model.WatchState,
            model.ChangeOutcome,
            model.DeliveryOutcome,
            model.FailureCode,
            model.PollRecord,
            model.PushOutcome,
            model.RegisterAction,
            model.StartKeyState,
            model.EventType,
            model.RunStatus,
        )
        for m in enum
    }
    lua = resources.files("relay.store") / "lua"
    scripts = [f for f in lua.iterdir() if f.name.endswith(".lua")]
    assert len(scripts) > 10
    found = [
        (script.name, number, word)
        for script in scripts
        for number, line in enumerate(script.read_text().splitlines(), 1)
        for word in _literal_values(line.split("--", 1)[0])
        if word in words
    ]
    assert found == []
    assert _literal_values("return {'outcome', 'ok'}") == ["ok"]  # a value is still seen
