"""One full run of real `relay api` and `relay worker` processes, then what operators see of it:
both /metrics endpoints, the health checks, and logs that never carry a key or a secret."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeConfig, FakeIntuned, Fault, RateLimitConfig, RunScript
from relay.fake_intuned import start_in_thread as start_fake
from tests.support.intuned_fixtures import FAKE_API_KEY, FAKE_WORKSPACE_ID
from tests.support.processes import ROOT, RelayProcess, clean_env
from tests.support.receiver import start_receiver_in_thread, verify
from tests.support.relay_fixtures import (
    ALPHA_KEY,
    AUTH_ALPHA,
    AUTH_BETA,
    BETA_KEY,
    base_env,
)

# With a token, relay_subscriptions is labelled by client (tests/test_metrics_access.py).
METRICS_TOKEN = "metrics-token-0123456789"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@dataclass
class FullRun:
    """What a finished run left behind."""

    api_metrics: str
    worker_metrics: str
    api_log: str
    worker_log: str
    secrets: list[str]
    worker_check: subprocess.CompletedProcess[str]
    api_check: subprocess.CompletedProcess[str]
    exit_codes: tuple[int, int]


def run_relay(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        env=clean_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def subscribe(api: httpx.Client, run_id: str, url: str, auth: dict[str, str]) -> str:
    body = {"projectName": "demo-project", "runId": run_id, "callbackUrl": url}
    resp = api.post("/v1/subscriptions", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def wait_delivered(api: httpx.Client, subs: dict[str, dict[str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(subs)
    while pending:
        for sid, auth in list(pending.items()):
            if api.get(f"/v1/subscriptions/{sid}", headers=auth).json()["state"] == "delivered":
                del pending[sid]
        assert time.monotonic() < deadline, f"not delivered: {pending}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def full_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullRun]:
    """API + worker processes; four events (one retried, one after an Intuned 500) delivered."""
    redis.Redis.from_url(redis_url).flushdb()
    tmp = tmp_path_factory.mktemp("full-run")
    fake = start_fake(
        FakeIntuned(
            {FAKE_WORKSPACE_ID: FAKE_API_KEY},
            config=FakeConfig(rate_limit=RateLimitConfig(enabled=False)),
        )
    )
    receiver = start_receiver_in_thread()
    api_port, metrics_port = free_port(), free_port()
    env = {
        **base_env(redis_url, fake.base_url),
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(api_port),
        "RELAY_WORKER_METRICS_PORT": str(metrics_port),
        "RELAY_METRICS_TOKEN": METRICS_TOKEN,
    }
    api_proc = RelayProcess(["api"], env, tmp / "api.log")
    worker = RelayProcess(["worker"], env, tmp / "worker.log")
    base = f"http://127.0.0.1:{api_port}"
    try:
        api_proc.wait_http(base + "/healthz", timeout=30)
        worker.wait_for_log("worker_started", timeout=30)
        with httpx.Client(base_url=base, timeout=5) as api:
            alpha = api.get("/v1/signing-secret", headers=AUTH_ALPHA).json()["secret"]
            beta_old = api.get("/v1/signing-secret", headers=AUTH_BETA).json()["secret"]
            beta = api.post("/v1/signing-secret/rotate", headers=AUTH_BETA).json()["secret"]
            assert api.get("/v1/subscriptions/sub_nope", headers=AUTH_ALPHA).status_code == 404
            assert api.get("/v1/subscriptions", headers={"Authorization": "Bearer x"}).is_error

            done = fake.state.create_run(RunScript(pending_polls=2, result={"total": 3}))
            failed = fake.state.create_run(RunScript(pending_polls=1, outcome="failed"))
            fake.state.add_fault(Fault(kind="error_500", run_id=failed, times=1))
            subs = {
                subscribe(api, done, receiver.url("/ok/a"), AUTH_ALPHA): AUTH_ALPHA,
                subscribe(api, done, receiver.url("/flaky/1/b"), AUTH_ALPHA): AUTH_ALPHA,
                subscribe(api, failed, receiver.url("/ok/c"), AUTH_ALPHA): AUTH_ALPHA,
                subscribe(api, done, receiver.url("/ok/d"), AUTH_BETA): AUTH_BETA,
            }
            wait_delivered(api, subs, timeout=20)
            for req in receiver.requests:
                verify(req, [alpha, beta])
            worker_check = run_relay(["worker", "--check"], env)
            api_check = run_relay(["api", "--check"], env)
            # Scrape after a moment: the worker refreshes its shared gauges every few seconds.
            api_metrics = api.get("/metrics", headers=METRICS_AUTH).text
        worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
        worker_metrics = httpx.get(worker_url, headers=METRICS_AUTH).text
        assert httpx.get(worker_url).status_code == 401  # the token guards the worker's port too
        codes = (api_proc.stop(), worker.stop())
        yield FullRun(
            api_metrics=api_metrics,
            worker_metrics=worker_metrics,
            api_log=api_proc.log(),
            worker_log=worker.log(),
            secrets=[FAKE_API_KEY, ALPHA_KEY, BETA_KEY, METRICS_TOKEN, alpha, beta_old, beta],
            worker_check=worker_check,
            api_check=api_check,
            exit_codes=codes,
        )
    finally:
        api_proc.stop()
        worker.stop()
        receiver.stop()
        fake.stop()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted labels: value} of every sample called ``name``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value for key, value in samples(text, name).items() if set(labels.items()) <= set(key)
    )


def test_both_processes_exit_0_on_sigterm(full_run: FullRun) -> None:
    assert full_run.exit_codes == (0, 0), full_run.worker_log[-2000:]


def test_worker_metrics_count_polls_deliveries_and_latencies(full_run: FullRun) -> None:
    m = full_run.worker_metrics
    assert total(m, "relay_polls_total", outcome="terminal") == 2
    assert total(m, "relay_polls_total", outcome="pending") >= 3
    assert total(m, "relay_polls_total", outcome="transient") == 1
    assert total(m, "relay_deliveries_total", outcome="delivered") == 4
    assert total(m, "relay_deliveries_total", outcome="retry") == 1
    assert total(m, "relay_delivery_attempt_seconds_count") == 5
    assert total(m, "relay_delivery_attempt_seconds_sum") > 0
    assert total(m, "relay_terminal_to_delivered_seconds_count") == 4
    assert samples(m, "relay_watched_runs") and samples(m, "relay_queue_depth")


def test_api_metrics_count_requests_by_route_and_subscriptions_by_state(
    full_run: FullRun,
) -> None:
    m = full_run.api_metrics
    created = total(m, "relay_api_requests_total", path="/v1/subscriptions", status_code="201")
    assert created == 4
    assert total(m, "relay_api_requests_total", status_code="404") >= 1
    assert total(m, "relay_api_requests_total", status_code="401") >= 1
    assert total(m, "relay_api_request_duration_seconds_count") > 0
    assert total(m, "relay_subscriptions", client="alpha", state="delivered") == 3
    assert total(m, "relay_subscriptions", client="beta", state="delivered") == 1
    assert total(m, "relay_subscriptions", state="watching") == 0


def test_health_checks_pass_against_live_processes(full_run: FullRun) -> None:
    assert full_run.worker_check.returncode == 0, full_run.worker_check.stdout
    assert full_run.api_check.returncode == 0, full_run.api_check.stderr


def test_logs_are_json_lines_with_ids_and_never_a_key_or_secret(full_run: FullRun) -> None:
    logs = full_run.api_log + full_run.worker_log
    for secret in full_run.secrets:
        assert secret not in logs
        if secret.startswith("whsec_"):
            assert secret.removeprefix("whsec_") not in logs
    events: list[dict[str, Any]] = [json.loads(line) for line in logs.splitlines() if line]
    polls = [e for e in events if e["event"] == "poll"]
    attempts = [e for e in events if e["event"] == "delivery_attempt"]
    assert polls and all(e["run_id"] for e in polls)
    assert len(attempts) == 5
    assert all(e["subscription_id"] and e["webhook_id"] and e["run_id"] for e in attempts)


def test_worker_check_fails_when_no_worker_runs(relay_env: dict[str, str]) -> None:
    result = run_relay(["worker", "--check"], relay_env)
    assert result.returncode == 1
    assert "no worker on this host" in result.stdout


def test_api_check_fails_when_nothing_listens(tmp_path: Path) -> None:
    result = run_relay(["api", "--check"], {"RELAY_PORT": str(free_port())})
    assert result.returncode == 1
    assert "/healthz does not answer" in result.stderr
