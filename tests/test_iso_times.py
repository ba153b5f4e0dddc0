"""``relay.services.views.iso``: every timestamp the API shows, as RFC 3339 UTC with
milliseconds, the same text as ``datetime`` gives, across seconds (each second's text is kept
once)."""

from __future__ import annotations

from datetime import UTC, datetime

from relay.services.views import iso


def reference(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_iso_is_rfc3339_utc_with_milliseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_764_547_200_123) == "2025-12-01T00:00:00.123Z"
    assert iso(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


def test_iso_matches_datetime_across_many_seconds() -> None:
    start = 1_764_547_199_000
    for ms in [*range(start, start + 3_000), *range(start, start + 600_000_000, 999_983)]:
        assert iso(ms) == reference(ms), ms
