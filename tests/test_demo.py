"""`relay demo`, a newcomer's first command, and the demo receiver's signature check."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from relay.cli import main
from relay.demo_receiver import VerificationError, verify_webhook
from relay.webhooks.signing import new_secret, webhook_headers
from tests.support.processes import RelayProcess


def test_demo_shows_polls_statuses_and_verified_webhooks_then_exits_0(tmp_path: Path) -> None:
    # The user's own settings must not leak into the demo: this REDIS_URL would break it.
    proc = RelayProcess(["demo"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path / "demo.log")
    started = time.monotonic()
    try:
        code = proc.wait(60)
    finally:
        proc.stop()
    out = proc.log()
    assert code == 0, out
    assert time.monotonic() - started < 60
    assert "Intuned says pending" in out
    for status in ("completed", "failed", "canceled"):
        assert f"Intuned says {status}  (terminal)" in out
        assert f"run.{status} -> /hooks/" in out
    assert out.count("signature VERIFIED") == 6  # five events, one of them retried after a 503
    assert "answered 503, the relay will retry" in out
    assert '"type": "run.completed"' in out  # the body a receiver gets is shown once
    assert "all 5 webhooks delivered and verified" in out
    # One run is started through the relay; Intuned's push brings its webhook right after.
    assert "with POST /v1/runs" in out
    assert "Intuned's sink pushed run" in out and "(202)" in out
    assert "after the fake finished the run" in out
    assert "INVALID" not in out


def test_demo_keep_running_says_where_its_logs_are_kept_and_opens_the_console(
    tmp_path: Path,
) -> None:
    proc = RelayProcess(["demo", "--keep-running"], {}, tmp_path / "demo.log")
    try:
        proc.wait_for_log("kept after the demo stops", 60)
        _sign_in_to_the_printed_console(proc.log())
        assert proc.stop() == 0
    finally:
        proc.stop()
    out = proc.log()
    match = re.search(r"the relay's JSON logs: (\S+relay\.log)", out)
    assert match, out
    log_file = Path(match.group(1))
    try:
        assert f"the relay's logs are kept in {log_file}" in out
        assert log_file.exists() and "worker_started" in log_file.read_text()
        assert "/_fake/" in out
    finally:
        shutil.rmtree(log_file.parent, ignore_errors=True)


def test_fake_intuned_help_documents_the_control_api() -> None:
    result = CliRunner().invoke(main, ["fake-intuned", "--help"], env={"INTUNED_API_KEY": ""})
    assert result.exit_code == 0
    for text in ("POST /_fake/runs", "push-faults", "curl -s -X POST", "fake-intuned-key"):
        assert text in result.output
    for fault in ("error_500", "gateway", "reset", "hang", "refuse", "rate_limited"):
        assert fault in result.output
    assert "123e4567-e89b-12d3-a456-426614174000" in result.output


def test_demo_receiver_verifies_like_standard_webhooks() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"run.completed","data":{}}'
    now = int(time.time())
    headers = webhook_headers("msg_1", now, body, [new, old])
    assert verify_webhook(old, headers, body) == {"type": "run.completed", "data": {}}
    assert verify_webhook(new, headers, body)["type"] == "run.completed"
    Webhook(new).verify(body, headers)  # the reference library agrees
    with pytest.raises(VerificationError, match="no signature"):
        verify_webhook(new_secret(), headers, body)
    with pytest.raises(VerificationError, match="no signature"):
        verify_webhook(new, headers, body.replace(b"completed", b"failed"))
    with pytest.raises(VerificationError, match="too far"):
        verify_webhook(new, headers, body, now=now + 301)
    with pytest.raises(VerificationError, match="missing"):
        verify_webhook(new, {k: v for k, v in headers.items() if k != "webhook-id"}, body)


def _sign_in_to_the_printed_console(out: str) -> None:
    """The demo prints the console's URL and a key: that key signs in through the form."""
    found = re.search(
        r"open (http://127\.0\.0\.1:\d+/console) and sign in with the API key (\S+)", out
    )
    assert found is not None, out
    console, key = found.groups()
    with httpx.Client(timeout=10) as browser:
        form = browser.get(console + "/sign-in")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        resp = browser.post(
            console + "/sign-in", data={"api_key": key, "_csrf_token": token.group(1)}
        )
        assert resp.status_code == 303
        page = browser.get(console)
        assert page.status_code == 200
        assert "Client <strong>demo</strong>" in page.text
