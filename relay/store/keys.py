"""Every Redis key and hash field of the relay, named once.

Keys of one run share the hash tag ``{w:<run digest>}``, keys of one subscription ``{s:<id>}``,
keys of one client ``{c:<client>}``; the due sets and housekeeping indexes are global. The Lua
scripts receive their keys in ``KEYS`` (built here); the only keys a script builds itself are
those of the members it walks (a run's subscribers, a due set's entries), and it builds them from
the templates in ``lua_constants()``, which the functions here make (each key's spelling, and
each entity's hash tag, is written once). This module must never do I/O or know about
scheduling.
"""

from __future__ import annotations

import base64
import hashlib
import re
from enum import StrEnum
from typing import Final
from urllib.parse import quote

from relay.model import (
    EVENT_STATUSES,
    ChangeOutcome,
    DeliveryOutcome,
    DueWork,
    EventType,
    FailureCode,
    Lane,
    PollKind,
    PollRecord,
    PushOutcome,
    RegisterAction,
    RunStatus,
    StartKeyState,
    SubState,
    WatchState,
)

PREFIX: Final = "r:"
DUE_POLL: Final = "r:due:poll"  # zset: run digest -> next poll (Redis ms); leased entries pushed
DUE_DELIVERY: Final = "r:due:dlv"  # zset: subscription id -> next attempt (Redis ms)
DUE_NOTICE: Final = "r:due:ntc"  # zset: subscription id -> next run.started attempt (Redis ms)
EXPIRING: Final = "r:exp"  # zset: "sid\tclient\tidem\trun" -> expiry (ms): index entries to prune
HOUSEKEEPING: Final = "r:hk"  # hash: the sweep's saved cursors
CLIENTS: Final = "r:clients"  # zset (score 0, by name): clients that ever subscribed
# The console's Litestar stores (sessions, failed sign-in counts) prefix their keys with these.
CONSOLE_SESSIONS: Final = "r:ui:sess"
CONSOLE_SIGN_INS: Final = "r:ui:signin"
# Pub/sub channels (not keys): a script publishes when it made work due now; pumps wake up.
WAKE_POLL: Final = "r:wake:poll"
WAKE_DELIVERY: Final = "r:wake:dlv"
WAKE_NOTICE: Final = "r:wake:ntc"


class WatchField(StrEnum):
    """Fields of the run watch hash ``r:{w:<rd>}``."""

    STATE = "st"
    RUN_KEY = "rk"
    STATUS = "s"
    FIRST_SEEN = "fs"
    INTERVAL = "iv"  # the poll interval (s) in its shortest form; absent: 0 (not polled yet)
    ERRORS = "er"
    NOT_FOUND_SINCE = "nf"
    ACTIVE = "ac"
    ENDED_AT = "ta"
    FAIL_CODE = "fc"
    FAIL_MESSAGE = "fm"
    FANOUT_CURSOR = "fo"
    # Runs started through the relay (POST /v1/runs):
    EXPECTS_PUSH = "px"  # 1: a sink push is expected (polled on the fallback curve until then)
    PUSHED = "pg"  # 1: a push arrived at some point
    PUSH_NEWS = "pn"  # 1: a push arrived that no poll has answered yet
    PUSH_POLLED = "pt"  # when the last push-triggered poll was claimed (Redis ms)
    DEADLINE = "dl"  # the watch's own deadline (Redis ms), instead of RELAY_WATCH_TIMEOUT
    PENDING = "pd"
    SEQUENCE = "sq"  # the last subscriber's sequence number; absent while only FIRST_SUB is
    FIRST_SUB = "s1"  # the run's first subscriber (sequence 1): not in the subscribers zset
    OWNER = "own"  # the client the run belongs to (RELAY_RUN_SHARING=owner)
    STARTED_AT = "sa"  # when a poll first saw the run started (Redis ms): run.started's time
    NOTICE_CURSOR = "no"  # run.started fan-out in progress: the last starter sequence reached


class StartKeyField(StrEnum):
    """Fields of an ``Idempotency-Key`` record of ``POST /v1/runs``."""

    STATE = "st"  # a StartKeyState: pending, done or unknown
    FINGERPRINT = "fp"  # the body's fingerprint
    TAKEN = "at"  # when the key was taken (Redis ms)
    CODE = "code"  # the stored answer's status code
    BODY = "body"  # the stored answer's body


class IngressField(StrEnum):
    """Fields of an ingress token hash."""

    RUN_KEY = "rk"
    SECRET_HASH = "sh"  # noqa: S105 (a field name)


class SubField(StrEnum):
    """Fields of the subscription hash ``r:{s:<sid>}``."""

    CLIENT = "cl"
    RUN_KEY = "rk"
    EVENTS = "ev"
    CREATED = "ca"
    CALLBACK = "cb"
    METADATA = "md"
    STATE = "st"
    UPDATED = "up"
    ATTEMPTS = "n"
    SERIES = "ser"
    EVENT_TYPE = "et"
    OCCURRED = "ta"
    NEXT_ATTEMPT = "na"
    IDEM = "ik"  # fingerprint; only on a client's later subscriptions on the same run id
    HEADERS = "hd"  # the client's extra headers, JSON (never logged)
    FINGERPRINT = "fp"  # metadata + headers: a changed re-registration is a 409
    # The run.started lane (only on subscriptions whose events include "started"):
    NOTICE_STATE = "ns"  # SubState: delivering, delivered, exhausted or gone
    NOTICE_ATTEMPTS = "nn"
    NOTICE_AT = "nt"  # the event's time: the watch's STARTED_AT


class ResultField(StrEnum):
    """Fields of the run's stored result, kept in its watch hash (its status is ``s``)."""

    BODY = "b"
    FETCHED = "t"


class ResultRide(StrEnum):
    """Whether a delivery claim carries the run's stored result (``claim_deliveries.lua``)."""

    NONE = "none"  # the run has no stored result (a watch failure, or none yet)
    BIG = "big"  # over the claim's size limit: the worker reads it on its own
    CARRIED = "result"  # in the claim's reply


class OpsField(StrEnum):
    """Fields of a client's operational webhook hash."""

    URL = "url"
    HEADERS = "hd"


class CounterField(StrEnum):
    """Fields of a client's per-minute delivery counters hash (``counters``)."""

    DELIVERED = "d"  # attempts that delivered
    FAILED = "f"  # attempts that did not


class SecretField(StrEnum):
    """Fields of a client's secret hash."""

    CURRENT = "cur"
    PREVIOUS = "prev"
    ROTATED = "rot"


def run_digest(run_key: str) -> str:
    """A short fixed-size name for a run key: the first 64 bits of its SHA-1 in unpadded
    URL-safe base64 (11 characters, 16 bytes shorter a watch key than 16 hex digits); the Lua
    computes the same from a subscription's run key with ``redis.sha1hex``."""
    digest = hashlib.sha1(run_key.encode(), usedforsecurity=False).digest()[:8]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def watch(rd: str) -> str:
    """The run's watch hash, with the run's last Intuned body (stored once for every
    subscriber, fields ``ResultField``)."""
    return f"r:{{w:{rd}}}"


def subscribers(rd: str) -> str:
    """zset: the run's subscription ids after the first by registration order (the fan-out
    cursor's order); the first (sequence 1) is the watch's ``FIRST_SUB`` field, so a run with
    one subscriber has no such key."""
    return f"{watch(rd)}:s"


def starters(rd: str) -> str:
    """zset: the run's subscription ids whose events include ``started``, by their sequence in
    the run (the run.started fan-out's cursor order); absent when none asked."""
    return f"{watch(rd)}:n"


def sub(sid: str) -> str:
    """The subscription hash."""
    return f"r:{{s:{sid}}}"


def attempts(sid: str) -> str:
    """list: the subscription's attempt log (JSON, newest last, trimmed)."""
    return f"{sub(sid)}:a"


def client_prefix(client: str) -> str:
    """What every key of one client starts with (its hash tag)."""
    return f"r:{{c:{client}}}"


def client_state(client: str, state: str) -> str:
    """zset: the client's subscription ids in one state (a ``SubState``), by creation (ms).
    Every subscription is in exactly one; the list of all of them is their merge (no index of
    its own)."""
    return f"{client_prefix(client)}:st:{state}"


def client_states(client: str) -> list[str]:
    """Every per-state zset of a client, in ``SubState`` order."""
    return [client_state(client, st) for st in SubState]


def client_idem(client: str) -> str:
    """hash: registration fingerprint -> subscription id."""
    return f"{client_prefix(client)}:idem"


def run_id_digest(run_id: str) -> str:
    """A short name for a run id alone (``?runId=`` has no project name): the digest of the
    run key's last, percent-encoded segment (the Lua computes it from the run key)."""
    return run_digest("\x00" + quote(run_id, safe=""))


def client_runs(client: str) -> str:
    """hash: run id digest (``run_id_digest``) -> the client's first subscription on that run
    id; later ones on the same run id are in ``client_run`` (most runs have one, so one hash
    per client instead of a key per client and run)."""
    return f"{client_prefix(client)}:runs"


def client_run(client: str, crd: str) -> str:
    """hash: the client's other subscriptions on one run id (``run_id_digest``): fingerprint
    -> id (the first is in ``client_runs``)."""
    return f"{client_prefix(client)}:run:{crd}"


def operational(client: str) -> str:
    """hash: the client's operational webhook (url, headers)."""
    return f"{client_prefix(client)}:ops"


def quota(client: str, name: str) -> str:
    """str: the client's use count of a quota in its current window (TTL: the window)."""
    return f"{client_prefix(client)}:quota:{name}"


def incident(name: str) -> str:
    """str: an open incident (e.g. Intuned refusing the key); TTL bounds a forgotten one."""
    return f"r:incident:{name}"


def start_key(client: str, key_hash: str) -> str:
    """hash: one Idempotency-Key of the client's starts (StartKeyField), 24 h."""
    return f"{client_prefix(client)}:start:{key_hash}"


def ingress(token: str) -> str:
    """hash: the run a push token belongs to (IngressField), until its watch expires."""
    return f"r:ing:{token}"


def secrets(client: str) -> str:
    """hash: the client's signing secrets."""
    return f"{client_prefix(client)}:sec"


def counters(client: str, minute: int | str) -> str:
    """hash: the client's delivery attempts in one minute (``CounterField``), ~2 h TTL."""
    return f"{client_prefix(client)}:n:{minute}"


# Lua builds member keys from these templates ('%s' is the member), made by the functions above.
_TEMPLATES: Final = {
    "K_WATCH": watch("%s"),
    "K_SUBS": subscribers("%s"),
    "K_STARTERS": starters("%s"),
    "K_SUB": sub("%s"),
    "K_ATTEMPTS": attempts("%s"),
    "K_CLIENT_RUN": client_run("%s", "%s"),
    "K_CLIENT_RUNS": client_runs("%s"),
    "K_STATE": client_state("%s", "%s"),
    "K_IDEM": client_idem("%s"),
    "K_SECRETS": secrets("%s"),
    "K_COUNTERS": counters("%s", "%s"),
}


def _lua_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The enums Lua names as ``W.STATE``, ``ST.DELIVERING``, ...: written as their literals when a
# script is loaded (``lua_inline``), so no call builds these tables (bench/NOTES.md).
_LUA_ENUMS: Final[dict[str, type[StrEnum]]] = {
    "W": WatchField,
    "F": SubField,
    "RF": ResultField,
    "RR": ResultRide,
    "SF": SecretField,
    "CF": CounterField,
    "ST": SubState,
    "WS": WatchState,
    "EV": EventType,
    "RS": RunStatus,
    "LANE": Lane,
    "FC": FailureCode,
    "PK": PollKind,
    "DW": DueWork,
    "PR": PollRecord,
    "PO": PushOutcome,
    "CO": ChangeOutcome,
    "RA": RegisterAction,
    "DO": DeliveryOutcome,
    "SK": StartKeyField,
    "KS": StartKeyState,
    "IF": IngressField,
}
_LUA_REF: Final = re.compile(r"\b(" + "|".join(_LUA_ENUMS) + r")\.([A-Z][A-Z0-9_]*)\b")


def lua_inline(source: str) -> str:
    """``source`` with every enum reference (``F.STATE``) as its literal (``'st'``); a name that
    is no member raises KeyError when the script is loaded rather than reading nil in Redis."""
    return _LUA_REF.sub(lambda m: _lua_str(_LUA_ENUMS[m[1]][m[2]].value), source)


def lua_constants() -> str:
    """The Lua prelude naming every key template and status set (generated from Python); the
    enums are inlined by ``lua_inline``."""
    out = "".join(f"local {k} = {_lua_str(v)}\n" for k, v in _TEMPLATES.items())
    out += f"local K_DUE_POLL, K_DUE_DLV = {_lua_str(DUE_POLL)}, {_lua_str(DUE_DELIVERY)}\n"
    out += f"local K_EXPIRING, K_CLIENTS = {_lua_str(EXPIRING)}, {_lua_str(CLIENTS)}\n"
    out += f"local K_DUE_NTC, WAKE_NTC = {_lua_str(DUE_NOTICE)}, {_lua_str(WAKE_NOTICE)}\n"
    out += f"local WAKE_POLL, WAKE_DLV = {_lua_str(WAKE_POLL)}, {_lua_str(WAKE_DELIVERY)}\n"
    terminal = ", ".join(f"{s}=true" for s in EVENT_STATUSES)
    out += f"local TERMINAL = {{{terminal}}}\n"
    states = ", ".join(_lua_str(s.value) for s in SubState)
    out += f"local ALL_STATES = {{{states}}}\n"
    return out
