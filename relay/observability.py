"""Logging setup: structured JSON (default) or console lines, with secrets redacted.

Called once by each process entry point; never at import time.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

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
    for key, value in event.items():
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = redact_text(value)
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
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    if fmt == "json":
        out = sys.stderr.buffer

        def factory(*args: Any) -> _NamedBytesLogger:
            return _NamedBytesLogger(str(args[0]) if args else "relay", out)

        structlog.configure(
            processors=[*processors, _render_json],
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
