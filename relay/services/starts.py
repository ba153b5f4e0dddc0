"""Start-and-watch (contract §7): start an Intuned run for a client and watch it, once per key.

    key taken (new)  ──▶ Intuned start ──▶ Started      register + push fields, 201, key done
                                      ├─▶ Refused      Intuned's 4xx passed on, key done
                                      ├─▶ Unavailable  502, key freed (the start surely did not
                                      │                happen: a retry may start)
                                      └─▶ Unknown      502 startOutcome unknown, key unknown for
                                                       its 24 h (never retried by the relay)
    key held: done → the stored answer; pending → 409 in_progress; unknown → 409
    start_outcome_unknown; another body → 409 idempotency_key_reused

Everything a request can get wrong (body, key, callback URL) is refused before the key is taken,
so a refused request changes nothing. This module must never see an HTTP request object, never
start a run twice for one key, and never log the ingress secret.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
import structlog

from relay.errors import InvalidInput, error_body
from relay.fields import METADATA_MAX_BYTES, CallbackUrl, ProjectName
from relay.intuned.client import IntunedClient
from relay.intuned.start import Refused, Started, Unavailable, Unknown
from relay.model import (
    RegisterAction,
    StartKeyState,
    SubscriptionDoc,
    SubState,
    fresh_subscription,
    new_subscription_id,
    now_ms,
    run_key,
    wanted_events,
)
from relay.policy import run_deadline_seconds
from relay.services.views import SubscriptionOut, subscription_out
from relay.settings import Settings
from relay.store import Stores
from relay.store.docs import registration_fingerprint
from relay.webhooks.callbacks import Lookup, check_callback
from relay.webhooks.custom_headers import validate_headers
from relay.webhooks.signing import new_secret

log = structlog.get_logger("relay.starts")

RELAY_FIELDS: Final = frozenset({"projectName", "callbackUrl", "events", "metadata", "headers"})
KEY_TTL_MS: Final = 24 * 3600 * 1000
# The header Intuned's sink sends back to the ingress; its value is per run and secret.
INGRESS_SECRET_HEADER: Final = "x-relay-ingress-secret"  # noqa: S105 (a header name)
INGRESS_PATH: Final = "/v1/ingress/intuned/"
_KEY_MAX: Final = 255

StartEvent = Literal["completed", "failed", "canceled", "started"]


class StartFields(msgspec.Struct, rename="camel"):
    """The relay's own fields of a ``POST /v1/runs`` body (the others go to Intuned)."""

    project_name: ProjectName
    callback_url: CallbackUrl
    events: Annotated[list[StartEvent], msgspec.Meta(min_length=1, max_length=4)] | None = None
    metadata: dict[str, Any] | None = None
    headers: dict[str, str] | None = None


class StartOut(msgspec.Struct, rename="camel"):
    """The 201 answer: Intuned's run id and status, and the subscription watching it."""

    run_id: str
    status: str
    subscription: SubscriptionOut


class StartAnswer(msgspec.Struct, frozen=True):
    """What the API answers: a status code and a JSON body (``retry_after``: seconds for a
    ``Retry-After`` header, passed on from Intuned's 429; not kept with the key's answer)."""

    status: int
    body: bytes
    retry_after: int | None = None


@dataclass(frozen=True)
class StartDeps:
    """What starting a run needs: settings, the stores, Intuned, the callback resolver."""

    settings: Settings
    store: Stores
    intuned: IntunedClient
    lookup: Lookup | None = None


_FIELDS_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_START_DECODER: Final = msgspec.json.Decoder(StartFields)
_ANY_DECODER: Final = msgspec.json.Decoder()


def error_answer(status: int, detail: str, **extra: Any) -> StartAnswer:
    """An error body in the API's shape, with extra fields (``code``, ``intuned``...)."""
    return StartAnswer(status, msgspec.json.encode(error_body(status, detail, **extra)))


def checked_key(value: str | None) -> str:
    """The ``Idempotency-Key`` header, or InvalidInput saying what is wrong with it."""
    if value is None:
        raise InvalidInput(
            "the Idempotency-Key header is required: a unique value per run to start "
            "(1-255 visible ASCII characters), sent again unchanged when retrying"
        )
    if not 1 <= len(value) <= _KEY_MAX or not all("!" <= c <= "~" for c in value):
        raise InvalidInput("Idempotency-Key must be 1-255 visible ASCII characters (no spaces)")
    return value


def parse_body(raw: bytes, settings: Settings) -> tuple[StartFields, dict[str, msgspec.Raw]]:
    """The relay's fields and, untouched, every other field (for Intuned); InvalidInput why."""
    try:
        fields = _FIELDS_DECODER.decode(raw)
        mine = _START_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"invalid request: {exc}") from None
    if settings.public_url is not None and "sink" in fields:
        raise InvalidInput(
            "sink: the relay sets Intuned's sink itself (RELAY_PUBLIC_URL is set), so that "
            "Intuned tells it when the run ends; remove the field"
        )
    metadata = msgspec.json.encode(mine.metadata or {})
    if len(metadata) > METADATA_MAX_BYTES:
        raise InvalidInput(f"metadata is {len(metadata)} bytes as JSON; the limit is 4096 (4 KiB)")
    validate_headers(mine.headers)  # refused before the key is taken; never sent to Intuned
    return mine, {k: v for k, v in fields.items() if k not in RELAY_FIELDS}


def key_hash(idempotency_key: str) -> str:
    """The Redis name of an idempotency key (its value never leaves the request)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def fingerprint(raw: bytes) -> str:
    """The body's identity for key reuse: equal JSON (key order aside) is the same body."""
    canonical = msgspec.json.encode(_ANY_DECODER.decode(raw), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def _held_answer(held_state: StartKeyState, code: int, body: bytes) -> StartAnswer:
    if held_state is StartKeyState.DONE:
        return StartAnswer(code, body)
    if held_state is StartKeyState.MISMATCH:
        return error_answer(
            409,
            "this Idempotency-Key was used with a different body; use a new key for a new run",
            code="idempotency_key_reused",
        )
    if held_state is StartKeyState.PENDING:
        return error_answer(
            409,
            "a request with this Idempotency-Key is still starting the run; retry shortly",
            code="in_progress",
        )
    return error_answer(
        409,
        "the start with this Idempotency-Key timed out after it was sent: Intuned may or may not "
        "have started the run, so the relay will not start it again with this key (for 24 h). "
        "Check Intuned before starting again with a new key",
        code="start_outcome_unknown",
    )


def _deadline_seconds(intuned_fields: dict[str, msgspec.Raw], margin: float) -> float:
    def value(name: str) -> object:
        raw = intuned_fields.get(name)
        return None if raw is None else _ANY_DECODER.decode(raw)

    return run_deadline_seconds(value("requestTimeout"), value("retry"), margin)


def _sink(public_url: str, token: str, secret: str) -> msgspec.Raw:
    sink = {
        "type": "webhook",
        "url": f"{public_url}{INGRESS_PATH}{token}",
        "headers": {INGRESS_SECRET_HEADER: secret},
    }
    return msgspec.Raw(msgspec.json.encode(sink))


def secret_hash(secret: str) -> str:
    """What the store keeps of an ingress secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(presented: str | None, stored_hash: str) -> bool:
    """True when ``presented`` is the secret whose hash is ``stored_hash`` (constant time)."""
    if presented is None:
        return False
    return hmac.compare_digest(secret_hash(presented).encode(), stored_hash.encode())


async def start_and_watch(
    deps: StartDeps, client: str, key_header: str | None, raw: bytes
) -> StartAnswer:
    """Start a run with Intuned for ``client`` and watch it; the answer to send (any status)."""
    s, starts = deps.settings, deps.store.starts
    key = checked_key(key_header)
    mine, intuned_fields = parse_body(raw, s)
    await check_callback(mine.callback_url, policy=s.callback_policy, lookup=deps.lookup)
    full = await _client_full(deps, client)
    if full is not None:
        return full
    khash, fp = key_hash(key), fingerprint(raw)
    pending_ms = int((s.intuned_timeout * 2 + 30) * 1000)
    held = await starts.claim_key(client, khash, fp, KEY_TTL_MS, pending_ms)
    if held.state is not StartKeyState.NEW:
        return _held_answer(held.state, held.code, held.body)
    token = secrets.token_urlsafe(24) if s.public_url else ""
    secret = secrets.token_urlsafe(32)
    if s.public_url:
        intuned_fields["sink"] = _sink(s.public_url, token, secret)
    outcome = await deps.intuned.start(mine.project_name, msgspec.json.encode(intuned_fields))
    if isinstance(outcome, Unavailable):
        # Kept like every other answer (contract §7: the same key gets the first answer again):
        # nothing started, so a new key may try again.
        answer = error_answer(
            502,
            f"Intuned did not start the run ({outcome.detail}); nothing was started: retry "
            "with a new Idempotency-Key (this one keeps this answer)",
            startOutcome="not_started",
        )
        log.warning("start_unavailable", client=client, detail=outcome.detail)
    elif isinstance(outcome, Started):
        push = _Push(token, secret_hash(secret)) if token else None
        answer = await _watch(deps, client, mine, outcome, intuned_fields, push)
    elif isinstance(outcome, Refused):
        answer = _refused(outcome)
        log.info("start_refused", client=client, status=outcome.status_code)
    else:
        answer = _unknown(outcome)
        log.warning("start_outcome_unknown", client=client)
    state = StartKeyState.UNKNOWN if isinstance(outcome, Unknown) else StartKeyState.DONE
    await starts.settle_key(client, khash, fp, state, answer.status, answer.body)
    return answer


class _Push(msgspec.Struct, frozen=True):
    token: str
    secret_hash: str


async def _client_full(deps: StartDeps, client: str) -> StartAnswer | None:
    """429 before starting anything when the client could not watch one more run."""
    limit = deps.settings.max_subscriptions_per_client
    counts = await deps.store.subscriptions.count_states(client)
    if counts.get(SubState.WATCHING, 0) + counts.get(SubState.DELIVERING, 0) < limit:
        return None
    return error_answer(
        429,
        f"RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT reached: this client has {limit} active "
        "subscriptions, so the relay could not watch another run; nothing was started",
    )


def _unknown(outcome: Unknown) -> StartAnswer:
    return error_answer(
        502,
        f"Intuned did not answer the start in time ({outcome.detail}); the run may or may not "
        "have started, and the relay will not start it again with this key",
        startOutcome="unknown",
    )


def _refused(outcome: Refused) -> StartAnswer:
    try:
        intuned: Any = _ANY_DECODER.decode(outcome.body)
    except msgspec.DecodeError:
        intuned = outcome.body.decode("utf-8", "replace")[:1000]
    answer = error_answer(
        outcome.status_code,
        f"Intuned refused the start with HTTP {outcome.status_code}; see `intuned`",
        intuned=intuned,
    )
    if outcome.retry_after is None:
        return answer
    return msgspec.structs.replace(answer, retry_after=math.ceil(outcome.retry_after))


async def _watch(
    deps: StartDeps,
    client: str,
    mine: StartFields,
    started: Started,
    intuned_fields: dict[str, msgspec.Raw],
    push: _Push | None,
) -> StartAnswer:
    """Register the subscription on the new run, give its watch the push fields: 201."""
    s = deps.settings
    run_id = started.run_id
    ws = s.intuned_workspace_id
    rk = run_key(mine.project_name, run_id)
    wanted: Sequence[str] | None = mine.events
    headers = validate_headers(mine.headers)
    metadata = msgspec.json.encode(mine.metadata or {})
    doc = SubscriptionDoc(
        id=new_subscription_id(),
        client=client,
        workspace_id=ws,
        project_name=mine.project_name,
        run_id=run_id,
        callback_url=mine.callback_url,
        events=wanted_events(wanted),
        metadata=msgspec.Raw(metadata),
        created_at=now_ms(),
        headers=headers,
    )
    # The push fields first: the registration wakes a poller at once, whose claim reads them.
    deadline_ms = int(_deadline_seconds(intuned_fields, s.run_deadline_margin) * 1000)
    await deps.store.starts.expect_push(
        rk, deadline_ms, push.token if push else "", push.secret_hash if push else ""
    )
    # The same arguments as relay.services.registration: fingerprint, owner rule, headers.
    reg = await deps.store.subscriptions.register(
        doc,
        rk,
        new_secret(),
        fingerprint=registration_fingerprint(metadata, headers),
        owner_only=s.run_sharing == "owner",
    )
    if reg.action not in (RegisterAction.POLL, RegisterAction.JOIN):
        # Only a quota reached between the check above and now gets here (the run id is new,
        # so no other client owns it and no registration of it exists).
        log.warning("started_run_not_watched", client=client, run_id=run_id, action=reg.action)
        return error_answer(
            429,
            f"Intuned started run {run_id}, but the relay cannot watch it ({reg.action}: "
            "a subscription limit was reached meanwhile); register it later by id",
            runId=run_id,
        )
    sub = fresh_subscription(doc, reg.status)
    out = StartOut(
        run_id=run_id, status=started.status, subscription=subscription_out(sub, reg.status)
    )
    log.info("run_started", client=client, run_id=run_id, subscription_id=doc.id, push=bool(push))
    return StartAnswer(201, msgspec.json.encode(out))
