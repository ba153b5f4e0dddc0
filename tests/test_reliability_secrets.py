"""Reliability 7, isolation and secrets: a run full of failure paths (keys presented wrongly,
Intuned errors, receivers failing, exhausted and redelivered, a watch failure, secret rotation,
a refused callback), then every log line of the API and worker processes and of the in-process
API is searched for every key and secret in play. Two clients watching the same run each get
webhooks only their own secret verifies.

The whole suite's process logs (a wrong Intuned key's 401 included, tests/test_e2e_polling.py)
are audited for the suite's keys at the end of every session
(``tests.support.reliability._suite_log_audit``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from relay.fake_intuned import FakeIntunedHandle, Fault, RunScript
from tests.support.intuned_fixtures import FAKE_API_KEY
from tests.support.receiver import ReceiverHandle, verify
from tests.support.relay_fixtures import (
    ALPHA_KEY,
    AUTH_ALPHA,
    AUTH_BETA,
    BETA_KEY,
    wait_until,
)
from tests.support.reliability import (
    StartApi,
    find_secrets,
    register_many,
    state_counts,
)
from tests.support.workers import StartWorker


async def test_no_key_or_secret_in_any_log_and_no_cross_client_signature(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
    start_api: StartApi,
    redis_sync: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = start_worker(wait=False, RELAY_RETRY_SCHEDULE="50ms,50ms")
    proc = start_api()
    worker.wait_started()
    fake = fake_intuned
    async with httpx.AsyncClient(base_url=proc.base_url, timeout=10) as http:
        alpha_old = (await http.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
        alpha = (await http.post("/v1/signing-secret/rotate", headers=AUTH_ALPHA)).json()["secret"]
        beta = (await http.get("/v1/signing-secret", headers=AUTH_BETA)).json()["secret"]
        # Keys presented wrongly, to both the real API process and the in-process app.
        for client in (http, api):
            for header in (
                f"Token {ALPHA_KEY}",
                f"Bearer {ALPHA_KEY}x",
                f"Bearer {BETA_KEY[:-1]}",
                f"bearer  {ALPHA_KEY} {BETA_KEY}",
                ALPHA_KEY,
            ):
                resp = await client.get("/v1/subscriptions", headers={"Authorization": header})
                assert resp.status_code == 401, header
                assert ALPHA_KEY not in resp.text and BETA_KEY not in resp.text
            resp = await client.get(f"/v1/subscriptions?key={ALPHA_KEY}", headers=AUTH_BETA)
            assert resp.status_code in (200, 400)
        # Refused callbacks (the API process allows private callbacks like the rest of the suite).
        bad = {"projectName": "p", "runId": "r", "callbackUrl": f"ftp://{ALPHA_KEY}@x/"}
        assert (await http.post("/v1/subscriptions", json=bad, headers=AUTH_ALPHA)).is_error

        shared = fake.state.create_run(RunScript(pending_polls=1, outcome="completed", result=1))
        failed = fake.state.create_run(RunScript(pending_polls=1, outcome="failed"))
        fake.state.add_fault(Fault(kind="error_500", run_id=failed, times=2))
        fake.state.add_fault(Fault(kind="reset", run_id=failed, times=1))
        alpha_subs = await register_many(
            http,
            [
                (shared, receiver.url("/ok/alpha")),
                (shared, receiver.url("/flaky/1/alpha")),
                (failed, receiver.url("/status/500/exhausted")),
                ("no-such-run", receiver.url("/ok/watch-failed")),
            ],
            concurrency=4,
        )
        [beta_sub] = await register_many(http, [(shared, receiver.url("/ok/beta"))], auth=AUTH_BETA)
        await wait_until(
            lambda: (
                state_counts(redis_sync, [*alpha_subs, beta_sub])
                == {"delivered": 4, "exhausted": 1}
            ),
            timeout=20,
        )
        resp = await http.post(f"/v1/subscriptions/{alpha_subs[2]}/redeliver", headers=AUTH_ALPHA)
        assert resp.status_code == 202
        resp = await http.post(f"/v1/subscriptions/{beta_sub}/redeliver", headers=AUTH_ALPHA)
        assert resp.status_code == 404  # another client's subscription does not exist for alpha
        await wait_until(lambda: len(receiver.requests) >= 10, timeout=10)
        assert (await http.get(f"/v1/subscriptions/{alpha_subs[0]}", headers=AUTH_ALPHA)).is_success

    # Isolation: each client's webhooks verify with its own secrets only.
    for req in receiver.requests:
        client = "beta" if req.path == "/ok/beta" else "alpha"
        own, other = ([alpha, alpha_old], [beta]) if client == "alpha" else ([beta], [alpha])
        verify(req, own)
        for secret in other:
            with pytest.raises(Exception, match="signature"):
                Webhook(secret).verify(req.body, req.headers)
    assert json.loads(receiver.requests[0].body)["data"]["runId"]

    secrets = [ALPHA_KEY, BETA_KEY, FAKE_API_KEY, alpha_old, alpha, beta]
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    logs["in-process api (captured)"] = "".join(capsys.readouterr())
    assert {"api-0.log", "worker-0.log"} <= set(logs)
    # The logs really were written (no arq job lines since first polls are a wake-up, not a job).
    assert sum(len(text) for text in logs.values()) > 5_000
    leaks = {name: find_secrets(text, secrets) for name, text in logs.items()}
    print(
        f"\nsecrets: {len(secrets)} keys/secrets searched in {len(logs)} logs "
        f"({sum(len(t.splitlines()) for t in logs.values())} lines): "
        f"{sum(len(v) for v in leaks.values())} found"
    )
    assert leaks == {name: [] for name in logs}


def test_the_log_audit_finds_what_it_looks_for() -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    assert find_secrets(f"Authorization: Bearer {ALPHA_KEY}", [ALPHA_KEY]) == ["alpha-..."]
    assert find_secrets(secret.removeprefix("whsec_"), [secret]) == ["whsec_..."]
    assert find_secrets(f"signing with {secret}", []) == ["whsec_QUJD..."]
    assert find_secrets('{"secret": "***", "note": "whsec_***"}', [ALPHA_KEY, secret]) == []
