"""Parsers of configuration values: durations, sizes, schedules, client keys, booleans.

Pure functions used by ``relay.settings`` (and the bench); each raises ``ConfigError`` naming the
variable it parses. This module must never read the environment itself.
"""

from __future__ import annotations

import re

from relay.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_duration(text: str, *, name: str) -> float:
    """Parse ``5s``, ``250ms``, ``30m``, ``2h`` or ``7d`` into seconds; raise naming ``name``."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(
            name, f"{text!r} is not a duration; use a number and a unit: ms, s, m, h or d (e.g. 5s)"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(name, f"{text!r} must be greater than zero")
    return seconds


def parse_size(text: str, *, name: str) -> int:
    """Parse ``16MiB``, ``500KB``, ``1048576`` (bytes) into bytes; raise naming ``name``."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(
            name, f"{text!r} is not a size; use a number and a unit: B, KB, KiB, MB, MiB, GB, GiB"
        )
    size = int(match.group(1)) * _UNIT_BYTES[(match.group(2) or "b").lower()]
    if size <= 0:
        raise ConfigError(name, f"{text!r} must be greater than zero")
    return size


def parse_schedule(text: str, *, name: str) -> tuple[float, ...]:
    """Parse a comma-separated list of durations (the retry schedule); an empty item is an
    error (``5s,,5m`` is more likely a typo than a wish for two delays)."""
    if not text.strip():
        raise ConfigError(name, "must list at least one delay, e.g. 5s,5m,30m")
    parts = text.split(",")
    if any(not p.strip() for p in parts):
        raise ConfigError(name, f"{text!r} has an empty item; list delays like 5s,5m,30m")
    return tuple(parse_duration(p, name=name) for p in parts)


def parse_api_keys(text: str, *, name: str) -> dict[str, str]:
    """Parse ``client:key,client2:key2`` into ``{key: client}``."""
    keys: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        client, sep, key = pair.partition(":")
        client, key = client.strip(), key.strip()
        if not sep or not client or not key:
            raise ConfigError(name, "each entry must be client:key (comma-separated)")
        if not _CLIENT_NAME.match(client):
            raise ConfigError(name, f"client name {client!r} may use only A-Z a-z 0-9 _ . -")
        if len(key) < 16:
            raise ConfigError(name, f"the key of client {client!r} is shorter than 16 characters")
        if key in keys:
            raise ConfigError(name, "two clients share one key")
        keys[key] = client
    if not keys:
        raise ConfigError(name, "must name at least one client:key pair")
    return keys


def parse_cookie_security(text: str | None) -> bool | None:
    """``RELAY_CONSOLE_SECURE_COOKIE``: ``auto`` (the default, None: Secure behind https), or a
    boolean (always, never)."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    try:
        return parse_bool(text, name="RELAY_CONSOLE_SECURE_COOKIE")
    except ConfigError:
        raise ConfigError(
            "RELAY_CONSOLE_SECURE_COOKIE", f"{text!r} is not auto, true or false"
        ) from None


def parse_bool(text: str, *, name: str) -> bool:
    """Parse true/false (also 1/0, yes/no, on/off)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, f"{text!r} is not true or false")
