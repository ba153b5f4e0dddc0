"""The relay's exception tree. HTTP and library errors are translated into these at the edges.

    RelayError
    ├── ConfigError            a setting is missing or malformed (names the variable)
    ├── InvalidInput           a client's request is malformed (-> 400)
    │   └── CallbackRefused    a callback URL is not http(s) or resolves to a forbidden address
    ├── NotFound               no such subscription/run for this client (-> 404)
    ├── Conflict               the request is valid but not now (-> 409)
    │   └── SubscriptionExists the same registration exists with other metadata/headers
    ├── QuotaExceeded          a configured limit is reached; names the limit (-> 429)
    └── Unavailable            Redis cannot serve the request now (-> 503 with Retry-After)

``error_body`` is the one shape of an error body, ``{"statusCode", "detail", ...}`` (camelCase like
every field of the API, contract §3): the API renders exceptions with it, and the start service
stores a refused start's answer with it.

``unavailable(exc)`` turns any redis-py error into an ``Unavailable`` that says why, chosen by
redis-py's exception class (only BUSY, which redis-py gives no class, is told by its error code).
The status codes live with the one renderer of error bodies, ``relay.api.responses``.

Intuned outcomes are not exceptions: ``relay.intuned.client`` returns a typed outcome instead.
This module must never import HTTP frameworks.
"""

from __future__ import annotations

import re
from typing import Any

from redis import exceptions as redis_errors


def error_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """An error body: the status repeated, a readable ``detail``, then ``extra``'s fields."""
    return {"statusCode": status, "detail": detail, **extra}


class RelayError(Exception):
    """Base of every error the relay raises on purpose.

    ``retry_after`` (seconds), when set, tells the client when to come back (``Retry-After``).
    """

    retry_after: int | None = None
    extra: dict[str, object] | None = None  # machine-readable details, shown as ``extra``


class ConfigError(RelayError):
    """A setting is missing or malformed; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


class InvalidInput(RelayError):
    """The client's request is malformed; the message says what to change."""


class CallbackRefused(InvalidInput):
    """A callback URL is refused: wrong scheme, unresolvable, or a forbidden address. The
    message is the field that held the URL, then ``reason`` (``callbackUrl must name a host``)."""

    def __init__(self, reason: str, field: str = "callbackUrl") -> None:
        super().__init__(f"{field} {reason}")
        self.reason = reason
        self.field = field


class NotFound(RelayError):
    """No such resource for this client (another client's resource is also 'not found')."""


class Conflict(RelayError):
    """The request is valid but cannot be honoured in the resource's current state."""


class SubscriptionExists(Conflict):
    """The same run and callback are registered with different metadata or headers."""

    code = "subscription_exists"

    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        self.extra = {"code": self.code, "subscriptionId": subscription_id}
        super().__init__(
            f"subscription_exists: {subscription_id} is registered for this projectName, runId "
            "and callbackUrl with different metadata or headers; delete it first, or register "
            "with the same values"
        )


class QuotaExceeded(RelayError):
    """A configured limit is reached; nothing was written. The message names the limit."""

    def __init__(
        self, setting: str, limit: int, what: str, *, retry_after: int | None = None
    ) -> None:
        self.setting = setting
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"{setting} reached (the limit is {limit}): {what}")


class Unavailable(RelayError):
    """Redis cannot serve the request now; retry after ``retry_after`` seconds."""

    retry_after: int

    def __init__(self, reason: str, *, retry_after: int, cause: str) -> None:
        self.retry_after = retry_after
        self.cause = cause  # the Redis condition, for logs and metrics (never shown raw)
        super().__init__(reason)


# redis-py's classes, most specific first (BusyLoadingError is a ConnectionError; ReadOnlyError
# and OutOfMemoryError are ResponseErrors), with what the client is told and when to come back.
_REDIS_CONDITIONS: tuple[tuple[type[redis_errors.RedisError], str, str, int], ...] = (
    (redis_errors.BusyLoadingError, "loading", "storage is loading its data; retry shortly", 5),
    (redis_errors.ConnectionError, "connection", "storage is unavailable; retry shortly", 2),
    (redis_errors.TimeoutError, "timeout", "storage did not answer in time; retry shortly", 2),
    (
        redis_errors.OutOfMemoryError,
        "oom",
        "storage is full (Redis reached maxmemory) and refuses writes; retry later",
        30,
    ),
    (
        redis_errors.ReadOnlyError,
        "readonly",
        "storage is read-only (connected to a replica) and refuses writes; retry shortly",
        5,
    ),
)
# Redis answers "-BUSY Redis is busy running a script..." while a script runs past its limit;
# redis-py maps no class to that code, so it is the one condition told by its error code.
# In a pipeline redis-py prefixes it: "Command # 1 (...) of pipeline caused error: ('BUSY...)".
_BUSY_CODE = re.compile(r"(?:^|\W)BUSY ")
_BUSY = ("busy", "storage is busy running a long script; retry shortly", 5)
_OTHER = ("error", "storage refused the request; retry shortly", 5)


def unavailable(exc: redis_errors.RedisError) -> Unavailable:
    """What a redis-py error means to a client of the relay: always ``Unavailable``."""
    for cls, cause, reason, retry_after in _REDIS_CONDITIONS:
        if isinstance(exc, cls):
            return Unavailable(reason, retry_after=retry_after, cause=cause)
    cause, reason, retry_after = _BUSY if _BUSY_CODE.search(str(exc)) else _OTHER
    return Unavailable(reason, retry_after=retry_after, cause=cause)
