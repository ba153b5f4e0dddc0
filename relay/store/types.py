"""What the store's sides answer: msgspec Structs decoded from the scripts' maps.

This module does no I/O.
"""

from __future__ import annotations

from urllib.parse import unquote

import msgspec

from relay.model import (
    ChangeOutcome,
    DeliveryOutcome,
    DueWork,
    Lane,
    PollKind,
    PollRecord,
    RegisterAction,
    Subscription,
    SubscriptionDoc,
    SubState,
    WatchFailure,
    WatchState,
)
from relay.store.keys import ResultRide


class Registration(msgspec.Struct, frozen=True):
    """What registering did (``register.lua``'s map). For poll and join the subscription is
    exactly the document written, watching, with no attempts; ``status`` is the run's last
    seen status."""

    action: RegisterAction
    id: str
    status: str | None = None

    @property
    def created(self) -> bool:
        """True when a subscription was written."""
        return self.action in (
            RegisterAction.POLL,
            RegisterAction.JOIN,
            RegisterAction.DELIVER,
            RegisterAction.SKIP,
        )


class ClaimedPoll(msgspec.Struct, frozen=True):
    """A run whose poll (``DueWork.POLL``) or fan-out (``DueWork.FANOUT``) is due, leased to
    the claiming worker; ``now`` is Redis's clock at the claim (ms)."""

    kind: DueWork
    rd: str
    rk: str
    now: int
    iv: float = 0.0
    fs: int = 0
    nf: int | None = None
    # Runs started through the relay: own deadline (Redis ms), a push expected (px), a push
    # came (pg), a push this poll answers (pn), run.started subscribers wait for the run to
    # be seen started (sw: polled on the normal curve until then, as the push only tells the end).
    dl: int | None = None
    px: bool = False
    pg: bool = False
    pn: bool = False
    sw: bool = False

    @property
    def project(self) -> str:
        """The run's project name."""
        return unquote(self.rk.split("/")[0]) if self.rk.count("/") == 1 else ""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return unquote(self.rk.split("/")[1]) if self.rk.count("/") == 1 else ""

    @property
    def first_seen(self) -> int:
        """When the watch started (Redis ms)."""
        return self.fs or self.now


class PollClaims(msgspec.Struct, frozen=True):
    """A poll claim's reply (``claim_polls.lua``), one JSON map: the leased runs (their values
    arrive as the watch hash's text: decoded with ``strict=False``)."""

    polls: list[ClaimedPoll] = []


class PollRecorded(msgspec.Struct, frozen=True):
    """What recording a poll did; ``now`` is Redis's clock (ms); ``notices``: the run's
    run.started fan-out is pending (call ``WatchStore.fan_out_notices`` until done)."""

    outcome: PollRecord
    now: int
    notices: bool = False


class GroupReply(msgspec.Struct, frozen=True):
    """One member's map in a group commit's reply: ``error`` says why Redis refused it."""

    error: str | None = None


class PollReply(GroupReply, frozen=True):
    """One poll's map in a ``record_poll`` reply: its record, or why it failed."""

    outcome: PollRecord = PollRecord.STALE  # (a map with an error has none: never read)
    now: int = 0
    notices: bool = False


class PollReplies(msgspec.Struct, frozen=True):
    """A ``record_poll`` reply, one JSON map: one ``PollReply`` per poll, in order."""

    replies: list[PollReply] = []


class PollArgs(msgspec.Struct, frozen=True, array_like=True):
    """One poll outcome's arguments for ``record_poll``, in the script's order: a group's
    travel as one msgpack array of these arrays (``WatchStore``), not nine arguments each."""

    rd: str
    kind: PollKind
    status: str = ""
    delay_ms: int = 0
    iv: str = "0"  # watches.interval_field of the poll interval
    code: str = ""
    message: str = ""
    not_found: bool = False


class PollToRecord(msgspec.Struct, frozen=True):
    """One poll outcome for ``record_poll``: its arguments, and the fetched body (any bytes:
    an argument of its own, since the msgpack of Redis's Lua has no binary type)."""

    args: PollArgs
    body: bytes = b""


class NoticeStep(msgspec.Struct, frozen=True):
    """One batch of a run's run.started fan-out."""

    due: int
    done: bool


class FanOutStep(msgspec.Struct, frozen=True):
    """One batch of an ended run's fan-out."""

    moved: int
    delivering: int
    done: bool


class ClaimReply(msgspec.Struct, frozen=True):
    """One leased subscription in a delivery claim's reply: its ``ClaimRow`` as JSON, and the
    run's result (bytes, not escaped into the JSON) when the claim carries it."""

    claim: bytes
    result: bytes | None = None


class ClaimRow(msgspec.Struct, frozen=True):
    """The claim map of one leased subscription (``ClaimReply.claim``; hash values arrive as
    text: decoded with ``strict=False``)."""

    id: str
    now: int
    lane: Lane = Lane.TERMINAL
    rk: str = ""
    cl: str = ""
    cb: str = ""
    ev: str = ""
    ca: int = 0
    md: str | None = None
    n: int = 0
    ser: int = 1
    et: str = ""
    ta: int = 0
    fc: str | None = None
    fm: str | None = None
    hd: str | None = None
    result_state: ResultRide = ResultRide.NONE
    cur: str | None = None
    prev: str | None = None
    rot: int | None = None


class ClaimedDelivery(msgspec.Struct, frozen=True):
    """A subscription whose delivery attempt is due, leased to the claiming worker, with what
    the attempt reads: the run's stored result (``result_known`` False when too big to carry:
    read it with ``DeliveryStore.result``), the secrets in force, the watch failure."""

    subscription_id: str
    doc: SubscriptionDoc
    attempts_in_series: int
    series: int
    event_type: str
    occurred_at: int
    run_digest: str
    now: int
    result: bytes | None = None
    result_known: bool = False
    secrets: tuple[str, ...] = ()
    failure: WatchFailure | None = None
    lane: Lane = Lane.TERMINAL  # started: the opt-in run.started event (no result, no series)


class AttemptRecorded(msgspec.Struct, frozen=True):
    """The state of the attempt's lane after it, and when the next attempt is due (a retry).
    ``stale``: the subscription had moved on meanwhile (canceled, expired, another series), so
    the attempt changed no state (``state`` is None)."""

    state: SubState | None = None
    next: int | None = None
    stale: bool = False


class RegisterArgs(msgspec.Struct, frozen=True, array_like=True):
    """A ``register`` call's arguments, in the script's order: one msgpack array (Redis's
    cmsgpack has no binary type, so every value is text or a number)."""

    sid: str
    client: str
    run_key: str
    rd: str
    idem: str
    events: str
    ttl_ms: int
    max_per_client: int
    max_per_run: int
    fresh_secret: str
    created: str  # ms, as text: stored as it is (a Lua number would print as 1.7e+12)
    fingerprint: str
    owner_only: bool
    crd: str
    fields: list[str]  # the document's own field/value pairs (``docs.doc_fields``)


class AttemptToRecord(msgspec.Struct, frozen=True, array_like=True):
    """One attempt waiting for its group's ``record_attempts`` call: its arguments, in the
    script's order (a group's travel as one msgpack array of these arrays, not eight each)."""

    sid: str
    series: int
    lane: Lane
    # The Attempt as JSON, as the attempt log stores it: text, so that it travels in the msgpack
    # (Redis's cmsgpack has no binary type and passes a string's bytes as they are; msgspec's
    # JSON is always UTF-8: it refuses lone surrogates, and the excerpt is decoded with
    # errors="replace").
    attempt: str
    outcome: DeliveryOutcome
    delay_ms: int
    rd: str  # the run digest and the run id digest (the r:exp member and the watch's key)
    rid: str


class RecordReply(GroupReply, frozen=True):
    """One attempt's map in a ``record_attempts`` reply: its record, or why it failed."""

    state: SubState | None = None
    next: int | None = None
    stale: bool = False


class RunWatch(msgspec.Struct, frozen=True):
    """A read-only view of one run's watch record."""

    state: WatchState
    status: str | None
    first_seen: int
    next_poll: int | None
    errors: int
    failure: WatchFailure | None
    pending: int = 0


class Page(msgspec.Struct, frozen=True):
    """One page of a client's subscriptions, newest first."""

    items: list[Subscription]
    next_cursor: str | None


class ListedId(msgspec.Struct, frozen=True):
    """One entry of a list page (list_page.lua): a subscription id and its creation (ms)."""

    id: str
    ca: int


class Outcome(msgspec.Struct, frozen=True):
    """A cancel's or redeliver's answer; ``state`` is set with ``conflict``."""

    outcome: ChangeOutcome
    state: SubState | None = None


class SweepSlice(msgspec.Struct, frozen=True):
    """One slice of the sweep."""

    polls: int
    deliveries: int
    seen: int
    watching_done: bool
    delivering_done: bool


class PruneSlice(msgspec.Struct, frozen=True):
    """One slice of pruning."""

    pruned: int
    seen: int


class DeferArgs(msgspec.Struct, frozen=True, array_like=True):
    """One delivery to push back (``defer.lua``), in the script's order: a group's travel as
    one msgpack array of these arrays."""

    sid: str
    lane: Lane
    until: int  # the new due time (Redis ms)


class DeferReply(GroupReply, frozen=True):
    """One member's map in a ``defer.lua`` reply: whether it moved (a delivery no longer
    leased or due, or whose lane is no longer delivering, stays as it is)."""

    deferred: bool = False


class QuotaUse(msgspec.Struct, frozen=True):
    """One counted use of a per-client quota (``quota.lua``): uses in this window, ms left."""

    count: int
    ttl: int


class BatchRedelivered(msgspec.Struct, frozen=True):
    """One batch of a bulk redeliver (``redeliver_batch.lua``)."""

    count: int  # subscriptions that started a new series
    offset: int  # where the next batch starts in the per-state index
    done: bool  # the index is walked through


class EventSource(msgspec.Struct, frozen=True):
    """What a subscription's event body is built from (for showing it, not sending it): its
    event type and time, the watch failure of a ``run.watch_failed``, the run's stored result."""

    event_type: str
    occurred_at: int
    failure: WatchFailure | None
    result: bytes | None
