"""Logging setup: structured JSON (default) or console lines, with secrets redacted.

Called once by each process entry point; never at import time. ``HotLine`` is the logger of the
one line written per delivery attempt: with JSON output it runs structlog's configured processors
itself, without structlog's per-call machinery (its cost: bench/NOTES.md, session 25); it must
never write a line structlog would not (another key order, a secret, a filtered level).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import IO, Any

import msgspec
import structlog

from relay.model import utc_second

_SECRET_PATTERNS = (
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"']+"),
)
_SECRET_KEYS = frozenset({"api_key", "secret", "authorization", "x-api-key", "password", "token"})


def redact_text(text: str) -> str:
    """Mask signing secrets and bearer tokens inside a string."""
    if "whsec_" in text:
        text = _SECRET_PATTERNS[0].sub("whsec_***", text)
    if "earer" in text or "EARER" in text:
        text = _SECRET_PATTERNS[1].sub(r"\1***", text)
    return text


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A key is lowered only when it is not lower case already, and a value is searched only
    # when it holds a marker (the hot log line's cost, bench/NOTES.md session 25).
    for key, value in event.items():
        if key in _SECRET_KEYS or (not key.islower() and key.lower() in _SECRET_KEYS):
            event[key] = "***"
        elif isinstance(value, str) and ("whsec_" in value or "earer" in value or "EARER" in value):
            event[key] = redact_text(value)
    return event


def _stamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``timestamp``: now as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it
    (``2026-11-30T10:00:00.123456Z``), the date and time formatted once per second
    (``utc_second``; the hot log line's cost, bench/NOTES.md session 25)."""
    now = time.time()
    second = int(now)
    micro = int((now - second) * 1_000_000)
    prefix = utc_second(second)
    event["timestamp"] = f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"
    return event


class _NamedBytesLogger(structlog.BytesLogger):
    """structlog's fast bytes logger, remembering the name it was created with."""

    def __init__(self, name: str, file: Any) -> None:
        super().__init__(file)
        self.name = name


def _add_name(logger: Any, _: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["logger"] = getattr(logger, "name", None)
    return event


_JSON = msgspec.json.Encoder(enc_hook=repr)


def _render_json(_: Any, __: str, event: MutableMapping[str, Any]) -> bytes:
    return _JSON.encode(event)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _stamp,
        structlog.processors.format_exc_info,
        _redact,
    ]


def build_formatter(fmt: str) -> logging.Formatter:
    """The stdlib formatter that renders every record (ours, arq's, granian's) as JSON/console."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=_shared_processors(),
    )


def logging_dictconfig(fmt: str, level: int = logging.INFO) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` equal to ``configure_logging`` for the stdlib side.

    Granian applies it in its own processes (main and workers) before our code runs there.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"relay": {"()": "relay.observability.build_formatter", "fmt": fmt}},
        "handlers": {
            "relay": {
                "class": "logging.StreamHandler",
                "formatter": "relay",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["relay"], "level": level},
        "loggers": {
            "_granian": {"handlers": [], "level": level, "propagate": True},
            "granian.access": {"handlers": [], "level": level, "propagate": True},
        },
    }


class _JsonOut:
    """Once ``configure_logging("json")`` ran: where JSON lines go, from which level, and the
    processors structlog was given (the last one renders the line)."""

    def __init__(self, out: IO[bytes], level: int, processors: list[Any]) -> None:
        self.out = out
        self.level = level
        self.processors = processors
        self.lock = threading.Lock()  # structlog's BytesLogger takes one around each line too


_json_out: _JsonOut | None = None


class HotLine:
    """A logger for a line written on every delivery attempt (seam "hot log line", bench/NOTES.md
    session 25): with JSON output it runs structlog's configured processors itself (the same
    line, level filter and stream; a test compares the two), without structlog's per-call
    machinery; with console output, before ``configure_logging`` or with ``exc_info``, it goes
    through structlog."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._log = structlog.get_logger(name)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO with ``fields``."""
        json_out = _json_out
        if json_out is None or "exc_info" in fields:
            self._log.info(event, **fields)
            return
        if json_out.level > logging.INFO:
            return
        fields["event"] = event
        rendered: Any = fields
        for processor in json_out.processors:  # ``self`` stands in for the logger (its name)
            rendered = processor(self, "info", rendered)
        line = rendered + b"\n"
        with json_out.lock:
            json_out.out.write(line)
            json_out.out.flush()


def configure_logging(fmt: str, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging (arq, granian) to stderr as JSON or console lines.

    The relay's own lines go straight to stderr as bytes (msgspec-encoded JSON), bypassing
    the stdlib logging machinery, which cost a noticeable share of a delivery's CPU
    (figures in ``bench/NOTES.md``).
    Foreign libraries' records go through the stdlib handler and the same processors.
    """
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_name,
        _stamp,
        structlog.processors.format_exc_info,
        _redact,
    ]
    global _json_out
    _json_out = None
    if fmt == "json":
        out = sys.stderr.buffer
        _json_out = _JsonOut(out, level, [*processors, _render_json])

        def factory(*args: Any) -> _NamedBytesLogger:
            return _NamedBytesLogger(str(args[0]) if args else "relay", out)

        structlog.configure(
            processors=_json_out.processors,
            logger_factory=factory,
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[
                *_shared_processors(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.make_filtering_bound_logger(level),
            cache_logger_on_first_use=True,
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
