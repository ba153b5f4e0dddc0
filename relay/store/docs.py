"""A subscription's document as hash fields and back, its fingerprint, and list cursors.

Pure functions; this module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote

import msgspec

from relay.model import ATTEMPT_DECODER, EVENT_STATUSES, Subscription, SubscriptionDoc, SubState
from relay.store.keys import SubField

EMPTY_METADATA: Final = b"{}"


def doc_fields(doc: SubscriptionDoc) -> list[str]:
    """The document's own fields (field, value, ...): callback, metadata unless ``{}``, headers
    if any. Values are text: the metadata and headers are JSON, which is UTF-8."""
    out = [SubField.CALLBACK.value, doc.callback_url]
    metadata = bytes(doc.metadata)
    if metadata != EMPTY_METADATA:
        out += [SubField.METADATA.value, metadata.decode()]
    if doc.headers:
        out += [SubField.HEADERS.value, msgspec.json.encode(doc.headers).decode()]
    return out


_HEADERS: Final = msgspec.json.Decoder(dict[str, str])


def registration_fingerprint(metadata: bytes, headers: Mapping[str, str]) -> str:
    """What must match for a repeated registration to be the same one (contract §6: a different
    ``metadata`` or ``headers`` is a 409): the metadata (keys in any order) and the headers
    (names in any case and order, and their values). '' for the default registration ({} and no
    headers), which stores no fingerprint (a field less on most subscriptions). The values are
    kept in the subscription anyway (they are sent): this digest of them reveals nothing more."""
    canonical = msgspec.json.encode(msgspec.json.decode(metadata), order="sorted")
    if canonical == b"{}" and not headers:
        return ""
    pairs = sorted((name.lower(), value) for name, value in headers.items())
    raw = canonical + b"\x00" + "\x00".join(f"{name}\x01{value}" for name, value in pairs).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def events_field(events: tuple[str, ...]) -> str:
    """The wanted statuses as ``|a|b|`` (the Lua finds ``|status|`` in it); '' for all of
    them (the default, not stored)."""
    if set(events) == set(EVENT_STATUSES):
        return ""
    return "|" + "|".join(events) + "|"


def doc_from(
    sid: str, f: Mapping[str, str | bytes | None], workspace_id: str
) -> SubscriptionDoc | None:
    """The document of a subscription hash (text keys); None when it has none. The run key
    stored names no workspace: it is the deployment's ``workspace_id``."""

    def get(field: SubField) -> str | None:
        value = f.get(field.value)
        return value.decode() if isinstance(value, bytes) else value

    created = get(SubField.CREATED)
    metadata = f.get(SubField.METADATA.value)
    headers = f.get(SubField.HEADERS.value)
    return doc_of(
        sid,
        workspace_id,
        callback=get(SubField.CALLBACK),
        rk=get(SubField.RUN_KEY),
        client=get(SubField.CLIENT),
        created=int(created) if created else 0,
        events=get(SubField.EVENTS),
        metadata=metadata.encode() if isinstance(metadata, str) else metadata,
        headers=headers,
    )


def doc_of(
    sid: str,
    workspace_id: str,
    *,
    callback: str | None,
    rk: str | None,
    client: str | None,
    created: int,
    events: str | None,
    metadata: bytes | None,
    headers: str | bytes | None,
) -> SubscriptionDoc | None:
    """The document from its stored fields (a hash's, or a claim's); None when it has none."""
    if not callback or not rk or not client or not created:
        return None
    project, _, run_id = rk.partition("/")
    return SubscriptionDoc(
        id=sid,
        client=client,
        workspace_id=workspace_id,
        project_name=unquote(project),
        run_id=unquote(run_id),
        callback_url=callback,
        events=tuple(e for e in events.split("|") if e) if events else EVENT_STATUSES,
        metadata=msgspec.Raw(metadata or EMPTY_METADATA),
        created_at=created,
        headers=_HEADERS.decode(headers) if headers else {},
    )


def subscription_from(
    sid: str, raw: Mapping[bytes, bytes], workspace_id: str, attempts: tuple[bytes, ...] = ()
) -> Subscription | None:
    """A subscription read back from its hash (and attempt log)."""
    f = {k.decode(): v for k, v in raw.items()}
    doc = doc_from(sid, f, workspace_id) if f.get(SubField.STATE.value) else None
    if doc is None:
        return None
    na, et = f.get(SubField.NEXT_ATTEMPT.value), f.get(SubField.EVENT_TYPE.value)
    return Subscription(
        doc=doc,
        state=SubState(f[SubField.STATE.value].decode()),
        updated_at=int(f.get(SubField.UPDATED.value) or doc.created_at),
        next_attempt_at=int(na) if na else None,
        attempts_in_series=int(f.get(SubField.ATTEMPTS.value, b"0")),
        series=int(f.get(SubField.SERIES.value, b"1")),
        event_type=et.decode() if et else None,
        run_status=None,
        attempts=tuple(ATTEMPT_DECODER.decode(a) for a in attempts),
    )


def idempotency_field(project_name: str, run_id: str, callback_url: str) -> str:
    """The fingerprint under which a client's identical registration is found again."""
    raw = "\x00".join((project_name, run_id, callback_url)).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_cursor(score: int, sid: str) -> str:
    """An opaque pagination cursor: the last item's creation time and id."""
    return base64.urlsafe_b64encode(f"{score}:{sid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of ``encode_cursor``; raises ValueError on a malformed cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, _, sid = raw.partition(":")
        if not sid:
            raise ValueError("cursor has no id")
        return int(score), sid
    except (UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise ValueError("malformed cursor") from exc
