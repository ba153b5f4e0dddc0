"""The relay's exception tree. HTTP and library errors are translated into these at the edges.

    RelayError
    ├── ConfigError            a setting is missing or malformed (names the variable)
    ├── InvalidInput           a client's request is malformed (-> 400)
    │   └── CallbackRefused    a callback URL is not http(s) or resolves to a forbidden address
    ├── NotFound               no such subscription/run for this client (-> 404)
    ├── Conflict               the request is valid but not now (-> 409)
    │   └── SubscriptionExists the same registration exists with other metadata/headers
    └── RateLimited            a per-client quota is used up (-> 429, names the limit)

Intuned outcomes are not exceptions: ``relay.intuned.client`` returns a typed outcome instead.
This module must never import HTTP frameworks.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""


class ConfigError(RelayError):
    """A setting is missing or malformed; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


class InvalidInput(RelayError):
    """The client's request is malformed; the message says what to change."""


class CallbackRefused(InvalidInput):
    """A callback URL is refused: wrong scheme, unresolvable, or a forbidden address."""


class NotFound(RelayError):
    """No such resource for this client (another client's resource is also 'not found')."""


class Conflict(RelayError):
    """The request is valid but cannot be honoured in the resource's current state."""


class SubscriptionExists(Conflict):
    """The same run and callback are registered with different metadata or headers."""

    code = "subscription_exists"

    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        super().__init__(
            f"subscription_exists: {subscription_id} is registered for this projectName, runId "
            "and callbackUrl with different metadata or headers; delete it first, or register "
            "with the same values"
        )


class RateLimited(RelayError):
    """A per-client quota is used up; the message names the limit."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)
