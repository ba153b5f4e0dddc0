"""Helpers of the reliability suite (tests/test_reliability_*.py): a real ``relay api`` process,
bulk registration, subscription states read straight from Redis, duplicate counting, and the
end-of-session audit of every process log the suite wrote (no key, no signing secret).

Everything here talks to loopback only. This module is test support: ``relay`` must never
import it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import redis

from relay.embedded_redis import free_port
from relay.store import keys
from tests.support.intuned_fixtures import FAKE_API_KEY, OTHER_API_KEY
from tests.support.processes import RelayProcess
from tests.support.receiver import ReceivedRequest
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, BETA_KEY

# The suite's keys, and the wrong Intuned key tests/test_e2e_polling.py gives a worker.
SUITE_SECRETS = (ALPHA_KEY, BETA_KEY, FAKE_API_KEY, OTHER_API_KEY, "wrong-key-wrong-key")
# A signing secret in clear (the log redaction writes "whsec_***").
_CLEAR_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/]{16,}")


@dataclass
class ApiProcess:
    """A real ``relay api`` child process on a free loopback port, its log in a file."""

    process: RelayProcess
    port: int

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The child process."""
        return self.process.proc

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"


class StartApi(Protocol):
    def __call__(self, **overrides: str) -> ApiProcess: ...


@pytest.fixture
def start_api(relay_env: dict[str, str], tmp_path: Path) -> Iterator[StartApi]:
    """Start real ``relay api`` processes (env overrides as keyword arguments); stopped after."""
    procs: list[RelayProcess] = []

    def start(**overrides: str) -> ApiProcess:
        port = free_port()
        env = {**relay_env, **overrides, "RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port)}
        proc = RelayProcess(["api"], env, tmp_path / f"api-{len(procs)}.log")
        procs.append(proc)
        api = ApiProcess(proc, port)
        proc.wait_http(api.base_url + "/healthz", timeout=30)
        return api

    try:
        yield start
    finally:
        for proc in procs:
            proc.stop()


class Poster(Protocol):
    async def post(self, url: str, **kwargs: Any) -> httpx.Response: ...


async def register_many(
    client: Poster,
    items: Sequence[tuple[str, str]],
    *,
    auth: dict[str, str] = AUTH_ALPHA,
    concurrency: int = 1,
    project: str = "demo-project",
) -> list[str]:
    """Register ``(run_id, callback_url)`` pairs; return the subscription ids in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(run_id: str, url: str) -> str:
        async with gate:
            body = {"projectName": project, "runId": run_id, "callbackUrl": url}
            resp = await client.post("/v1/subscriptions", json=body, headers=auth)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    return list(await asyncio.gather(*(one(r, u) for r, u in items)))


def states(client: redis.Redis, sids: Sequence[str]) -> dict[str, str | None]:
    """Each subscription's state, read from Redis in one pipeline (None: no such key)."""
    pipe = client.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(keys.sub(sid), keys.SubField.STATE.value)
    return {
        sid: (v.decode() if v is not None else None)
        for sid, v in zip(sids, pipe.execute(), strict=True)
    }


def state_counts(client: redis.Redis, sids: Sequence[str]) -> Counter[str | None]:
    """How many of ``sids`` are in each state."""
    return Counter(states(client, sids).values())


def webhook_counts(requests: Iterable[ReceivedRequest]) -> Counter[str]:
    """How many requests arrived per ``webhook-id``."""
    return Counter(r.webhook_id or "" for r in requests)


def duplicates(requests: Iterable[ReceivedRequest]) -> int:
    """Extra requests beyond the first, summed over webhook ids."""
    return sum(n - 1 for n in webhook_counts(requests).values())


def error_lines(paths: Iterable[Path]) -> list[str]:
    """Log lines at level error (JSON logs) from the given files."""
    out: list[str] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or '"level": "critical"' in line:
                out.append(line[:500])
    return out


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """Which of ``secrets`` (and any signing secret in clear) occur in ``text``, masked."""
    found = []
    for secret in secrets:
        forms = [secret]
        if secret.startswith("whsec_"):
            forms.append(secret.removeprefix("whsec_"))  # the key material without its prefix
        if any(form in text for form in forms):
            found.append(f"{secret[:6]}...")
    found += [f"{m.group()[:10]}..." for m in _CLEAR_WHSEC.finditer(text)]
    return found


@pytest.fixture(scope="session", autouse=True)
def _suite_log_audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session: no log file any test's processes wrote holds a key or a secret."""
    yield
    leaks = {}
    for path in sorted({p.resolve() for p in tmp_path_factory.getbasetemp().rglob("*.log")}):
        hits = find_secrets(path.read_text(errors="replace"), SUITE_SECRETS)
        if hits:
            leaks[str(path)] = hits
    assert not leaks, f"keys or signing secrets in process logs: {leaks}"
