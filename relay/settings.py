"""The relay's configuration: one immutable, typed object built from the environment.

Settings are read once, by the process entry point (``relay.cli``), and passed in explicitly.
Nothing in the package reads ``os.environ`` at import time. Every variable is listed, with a
comment, in ``.env.example`` and in ``relay-contract.md`` §2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import msgspec

from relay.config_values import parse_api_keys as parse_api_keys
from relay.config_values import parse_bool as parse_bool
from relay.config_values import parse_cookie_security as parse_cookie_security
from relay.config_values import parse_duration as parse_duration
from relay.config_values import parse_schedule as parse_schedule
from relay.config_values import parse_size as parse_size
from relay.errors import ConfigError
from relay.webhooks.allowlist import CallbackPolicy, build_policy, parse_allowlist

DEFAULT_INTUNED_BASE = "https://app.intuned.io/api/v1/workspace"
DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"

_UUIDISH = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_PUBLIC_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")

LogFormat = Literal["json", "console"]
RunSharing = Literal["workspace", "owner"]
MAX_PROCESSES = 64


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parse_run_sharing(text: str) -> RunSharing:
    """RELAY_RUN_SHARING: ``workspace`` or ``owner`` (any case)."""
    value = text.strip().lower()
    if value == "owner":
        return "owner"
    if value == "workspace":
        return "workspace"
    raise ConfigError("RELAY_RUN_SHARING", f"{text!r} must be workspace or owner")


def metrics_token(text: str | None) -> str:
    """RELAY_METRICS_TOKEN: unset or a token of 16+ visible characters (sent as a bearer)."""
    if text is None:
        return ""
    if len(text) < 16 or not text.isprintable() or any(c.isspace() for c in text):
        raise ConfigError(
            "RELAY_METRICS_TOKEN", "must be 16 or more visible characters without spaces"
        )
    return text


class _Env:
    """Read variables from one environment mapping; blank counts as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        """The stripped value of ``name``, or ``default`` when unset or blank."""
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def required(self, name: str, hint: str) -> str:
        """The value of ``name``; raise ConfigError with ``hint`` when unset."""
        value = self.get(name)
        if value is None:
            raise ConfigError(name, f"is required: {hint}")
        return value

    def duration(self, name: str, default: str) -> float:
        """A duration variable in seconds (see ``parse_duration``)."""
        return parse_duration(self.get(name, default) or default, name=name)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """A whole-number variable within ``low..high``."""
        text = self.get(name, str(default)) or str(default)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(name, f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high}")
        return value


def _redis_url(env: _Env, *, require_redis: bool) -> str | None:
    """REDIS_URL: required unless the caller starts an embedded Redis."""
    redis_url = env.get("REDIS_URL")
    if redis_url is None and require_redis:
        raise ConfigError("REDIS_URL", "is required, e.g. redis://127.0.0.1:6379/0")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")
    return redis_url


def _intuned_base(env: _Env) -> str:
    """INTUNED_API_BASE_URL: an http(s) URL, Intuned's own by default."""
    base = env.get("INTUNED_API_BASE_URL", DEFAULT_INTUNED_BASE) or DEFAULT_INTUNED_BASE
    if not base.startswith(("http://", "https://")):
        raise ConfigError("INTUNED_API_BASE_URL", "must be an http(s) URL")
    return base


def _workspace(env: _Env) -> str:
    """INTUNED_WORKSPACE_ID: a uuid-like id, not the example manifests' all-zero placeholder."""
    workspace = env.required("INTUNED_WORKSPACE_ID", "the uuid of the Intuned workspace to watch")
    if not _UUIDISH.match(workspace):
        raise ConfigError("INTUNED_WORKSPACE_ID", "must be a workspace id (a uuid)")
    if not workspace.replace("-", "").strip("0"):
        raise ConfigError(
            "INTUNED_WORKSPACE_ID",
            "is the all-zero placeholder of the example manifests: set your workspace's id",
        )
    return workspace


def _intervals(
    env: _Env, name: str, default: str, max_name: str, max_default: str
) -> tuple[float, float]:
    """An interval and the most it may grow to (``name``, ``max_name``); ConfigError on
    ``max_name`` when that maximum is below the interval."""
    interval, maximum = env.duration(name, default), env.duration(max_name, max_default)
    if maximum < interval:
        raise ConfigError(max_name, f"must not be below {name}")
    return interval, maximum


def _public_url(env: _Env) -> str | None:
    """RELAY_PUBLIC_URL: unset, or the relay's http(s) base URL as Intuned reaches it."""
    public_url = env.get("RELAY_PUBLIC_URL")
    if public_url is not None and not _PUBLIC_URL.match(public_url):
        raise ConfigError(
            "RELAY_PUBLIC_URL",
            "must be the relay's http(s) base URL as Intuned reaches it, without query or "
            "fragment, e.g. https://relay.example.com",
        )
    return public_url


def _log_format(env: _Env) -> LogFormat:
    """RELAY_LOG_FORMAT: json or console."""
    log_format = (env.get("RELAY_LOG_FORMAT", "json") or "json").lower()
    if log_format not in ("json", "console"):
        raise ConfigError("RELAY_LOG_FORMAT", "must be json or console")
    return "json" if log_format == "json" else "console"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the relay's processes are configured with (contract §2)."""

    redis_url: str | None
    intuned_api_base_url: str = DEFAULT_INTUNED_BASE
    intuned_workspace_id: str
    intuned_api_key: str = msgspec.field(default="")
    api_keys: dict[str, str]  # key -> client name
    allow_private_callbacks: bool = False
    callback_allowlist: tuple[str, ...] = ()  # normalized entries (relay.webhooks.allowlist)
    retry_schedule: tuple[float, ...] = parse_schedule(DEFAULT_RETRY_SCHEDULE, name="-")
    delivery_timeout: float = 15.0
    poll_interval: float = 3.0
    poll_max_interval: float = 30.0
    watch_timeout: float = 86400.0
    result_ttl: float = 7 * 86400.0
    host: str = "0.0.0.0"
    port: int = 8080
    log_format: LogFormat = "json"
    # Operational knobs beyond the contract (documented in .env.example).
    worker_concurrency: int = 64
    worker_metrics_port: int = 9090
    shutdown_grace: float = 20.0
    intuned_timeout: float = 10.0
    not_found_grace: float = 60.0
    embedded_redis_dir: str = ".relay/redis"
    # Start-and-watch and the push ingress (contract §7).
    public_url: str | None = None
    push_fallback_interval: float = 60.0
    push_fallback_max_interval: float = 300.0
    run_deadline_margin: float = 900.0
    # Processes per container: 0 means one per CPU this process may run on.
    worker_processes: int = 1
    api_workers: int = 1
    # Limits (contract §6).
    max_subscriptions_per_client: int = 100_000
    max_subscriptions_per_run: int = 1000
    max_result_bytes: int = 16 * 1024 * 1024
    # Controls (contract §6): who may read a run, and the test-delivery quota.
    run_sharing: RunSharing = "workspace"
    test_deliveries_per_minute: int = 10
    metrics_token: str = msgspec.field(default="")  # empty: /metrics is open, without client names
    # Fair delivery (relay.webhooks.hostgate): per callback host, per worker process.
    max_in_flight_per_host: int = 8
    breaker_threshold: int = 5  # consecutive timeouts/connection failures; 0 turns it off
    breaker_cooldown: float = 30.0
    dns_timeout: float = 5.0
    # How long the API waits for Redis: a free connection, connecting, each answer.
    redis_timeout: float = 5.0
    # The operator page (/console): session lifetime (sliding), Secure cookies, sign-in limit.
    console_session_ttl: float = 3600.0
    console_secure_cookie: bool | None = None  # None (auto): Secure when the request is https
    console_signin_limit: int = 10

    def __repr__(self) -> str:  # never print secrets
        return (
            f"Settings(redis_url={'set' if self.redis_url else None}, "
            f"intuned_api_base_url={self.intuned_api_base_url!r}, "
            f"intuned_workspace_id={self.intuned_workspace_id!r}, clients={len(self.api_keys)})"
        )

    __str__ = __repr__

    @property
    def callback_policy(self) -> CallbackPolicy:
        """Where callbacks may go: RELAY_ALLOW_PRIVATE_CALLBACKS plus RELAY_CALLBACK_ALLOWLIST."""
        return build_policy(self.allow_private_callbacks, self.callback_allowlist)

    @property
    def max_retry_delay(self) -> float:
        """The longest delay in the retry schedule: the cap for a receiver's Retry-After."""
        return max(self.retry_schedule)

    @property
    def worker_process_count(self) -> int:
        """How many ``relay worker`` processes to run (RELAY_WORKER_PROCESSES, 0 = CPUs)."""
        return self.worker_processes or usable_cpus()

    @property
    def api_worker_count(self) -> int:
        """How many granian workers serve the API (RELAY_API_WORKERS, 0 = CPUs)."""
        return self.api_workers or usable_cpus()

    @property
    def max_attempts(self) -> int:
        """First attempt plus one per scheduled retry."""
        return len(self.retry_schedule) + 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, require_redis: bool = True) -> Settings:
        """Build settings from an environment mapping; raise ConfigError naming the variable."""

        env = _Env(environ)
        get, duration, integer = env.get, env.duration, env.integer
        redis_url = _redis_url(env, require_redis=require_redis)
        base = _intuned_base(env)
        workspace = _workspace(env)
        api_key = env.required("INTUNED_API_KEY", "the Intuned API key, sent as x-api-key")
        keys = parse_api_keys(
            env.required(
                "RELAY_API_KEYS", "comma-separated client:key pairs, e.g. billing:s3cr3t..."
            ),
            name="RELAY_API_KEYS",
        )
        poll_interval, poll_max = _intervals(
            env, "RELAY_POLL_INTERVAL", "3s", "RELAY_POLL_MAX_INTERVAL", "30s"
        )
        public_url = _public_url(env)
        push_fallback, push_fallback_max = _intervals(
            env, "RELAY_PUSH_FALLBACK_INTERVAL", "60s", "RELAY_PUSH_FALLBACK_MAX_INTERVAL", "5m"
        )
        log_format = _log_format(env)

        return cls(
            redis_url=redis_url,
            intuned_api_base_url=base.rstrip("/"),
            intuned_workspace_id=workspace,
            intuned_api_key=api_key,
            api_keys=keys,
            allow_private_callbacks=parse_bool(
                get("RELAY_ALLOW_PRIVATE_CALLBACKS", "false") or "false",
                name="RELAY_ALLOW_PRIVATE_CALLBACKS",
            ),
            callback_allowlist=parse_allowlist(get("RELAY_CALLBACK_ALLOWLIST", "") or ""),
            retry_schedule=parse_schedule(
                get("RELAY_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE) or DEFAULT_RETRY_SCHEDULE,
                name="RELAY_RETRY_SCHEDULE",
            ),
            delivery_timeout=duration("RELAY_DELIVERY_TIMEOUT", "15s"),
            poll_interval=poll_interval,
            poll_max_interval=poll_max,
            watch_timeout=duration("RELAY_WATCH_TIMEOUT", "24h"),
            result_ttl=duration("RELAY_RESULT_TTL", "7d"),
            host=get("RELAY_HOST", "0.0.0.0") or "0.0.0.0",
            port=integer("RELAY_PORT", 8080, 1, 65535),
            log_format=log_format,
            worker_concurrency=integer("RELAY_WORKER_CONCURRENCY", 64, 1, 4096),
            worker_metrics_port=integer("RELAY_WORKER_METRICS_PORT", 9090, 0, 65535),
            shutdown_grace=duration("RELAY_SHUTDOWN_GRACE", "20s"),
            intuned_timeout=duration("RELAY_INTUNED_TIMEOUT", "10s"),
            not_found_grace=duration("RELAY_NOT_FOUND_GRACE", "60s"),
            embedded_redis_dir=get("RELAY_REDIS_DIR", ".relay/redis") or ".relay/redis",
            public_url=public_url.rstrip("/") if public_url else None,
            push_fallback_interval=push_fallback,
            push_fallback_max_interval=push_fallback_max,
            run_deadline_margin=duration("RELAY_RUN_DEADLINE_MARGIN", "15m"),
            worker_processes=integer("RELAY_WORKER_PROCESSES", 1, 0, MAX_PROCESSES),
            api_workers=integer("RELAY_API_WORKERS", 1, 0, MAX_PROCESSES),
            max_subscriptions_per_client=integer(
                "RELAY_MAX_SUBSCRIPTIONS_PER_CLIENT", 100_000, 1, 100_000_000
            ),
            max_subscriptions_per_run=integer(
                "RELAY_MAX_SUBSCRIPTIONS_PER_RUN", 1000, 1, 1_000_000
            ),
            max_result_bytes=parse_size(
                get("RELAY_MAX_RESULT_BYTES", "16MiB") or "16MiB", name="RELAY_MAX_RESULT_BYTES"
            ),
            run_sharing=parse_run_sharing(get("RELAY_RUN_SHARING", "workspace") or "workspace"),
            test_deliveries_per_minute=integer("RELAY_TEST_DELIVERIES_PER_MINUTE", 10, 1, 10000),
            metrics_token=metrics_token(get("RELAY_METRICS_TOKEN")),
            max_in_flight_per_host=integer("RELAY_MAX_IN_FLIGHT_PER_HOST", 8, 1, 4096),
            breaker_threshold=integer("RELAY_BREAKER_THRESHOLD", 5, 0, 10000),
            breaker_cooldown=duration("RELAY_BREAKER_COOLDOWN", "30s"),
            dns_timeout=duration("RELAY_DNS_TIMEOUT", "5s"),
            redis_timeout=duration("RELAY_REDIS_TIMEOUT", "5s"),
            console_session_ttl=duration("RELAY_CONSOLE_SESSION_TTL", "1h"),
            console_secure_cookie=parse_cookie_security(get("RELAY_CONSOLE_SECURE_COOKIE")),
            console_signin_limit=integer("RELAY_CONSOLE_SIGNIN_LIMIT", 10, 1, 10_000),
        )
