"""The delivery worker's hot log line (``relay.observability.HotLine``) against structlog's chain.

Each case runs in a subprocess of its own (logging is configured once per process): the same
fields logged through structlog and through the hot line must come out as the same JSON line,
keys in the same order, contextvars merged, secrets redacted, but for the timestamp; a level
above INFO silences both; console output goes through structlog.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime

SCRIPT = """
import logging, sys, structlog
from relay.observability import HotLine, configure_logging
configure_logging(sys.argv[1], getattr(logging, sys.argv[2]))
structlog.contextvars.bind_contextvars(request_id="r-1")
fields = dict(
    subscription_id="sub_1", webhook_id="msg_x", attempt=2, outcome="retry", stale=False,
    status_code=None, error="http_500", duration_ms=1.5, note="key whsec_abcDEF= here",
    Authorization="Bearer t0ken", detail="sent with Bearer t0ken", next_attempt_at=None,
)
stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
print(stamp(None, "info", {})["timestamp"], flush=True)
structlog.get_logger("relay.delivery").info("delivery_attempt", **fields)
HotLine("relay.delivery").info("delivery_attempt", **fields)
print(stamp(None, "info", {})["timestamp"], flush=True)
"""
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def run(fmt: str, level: str = "INFO") -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) of the script."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt, level],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines(), done.stderr.splitlines()


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_hot_line_is_structlogs_line_but_for_the_timestamp() -> None:
    (before, after), lines = run("json")
    assert len(lines) == 2
    via_structlog, hot = (json.loads(line, object_pairs_hook=list) for line in lines)
    assert [k for k, _ in hot] == [k for k, _ in via_structlog]
    stamps = [dict(pairs).pop("timestamp") for pairs in (via_structlog, hot)]
    assert [p for p in hot if p[0] != "timestamp"] == [
        p for p in via_structlog if p[0] != "timestamp"
    ]
    for stamp in stamps:
        assert STAMP.fullmatch(stamp), stamp
        assert when(before) <= when(stamp) <= when(after)
    line = dict(hot)
    assert line["event"] == "delivery_attempt" and line["level"] == "info"
    assert line["logger"] == "relay.delivery" and line["request_id"] == "r-1"
    assert line["Authorization"] == "***"
    assert line["note"] == "key whsec_*** here" and line["detail"] == "sent with Bearer ***"
    assert "t0ken" not in lines[1] and "abcDEF" not in lines[1]


def test_a_level_above_info_silences_the_hot_line_too() -> None:
    _, lines = run("json", "WARNING")
    assert lines == []


def test_console_output_goes_through_structlog() -> None:
    _, lines = run("console")
    assert len(lines) == 2
    for line in lines:
        assert not line.startswith("{")  # a console line, not JSON
        assert "delivery_attempt" in line and "request_id=r-1" in line and "t0ken" not in line
    assert lines[0].split(" ", 1)[1] == lines[1].split(" ", 1)[1]  # but for the time in front
