"""The receiver examples of docs/webhooks.md verify a real delivery from the relay.

docs/examples/python/receiver.py and docs/examples/node/receiver.mjs run as they are (the Node
one with ``standardwebhooks`` installed by ``npm ci`` from the committed lock into a test-local
folder); the relay's worker delivers a webhook to each, which must verify it, print it once and
answer 2xx (the subscription ends ``delivered``). A forged request gets 400. The docs embed these
files verbatim, which tests/test_docs.py checks.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle
from tests.support.relay_fixtures import AUTH_ALPHA, subscription_state, wait_until
from tests.support.workers import StartInprocWorker

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


class Example:
    """One example receiver process on a free loopback port, its output in a file."""

    def __init__(self, command: list[str], cwd: Path, secret: str, log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = log.open("wb")
        env = {"RELAY_SIGNING_SECRET": secret, "PORT": str(self.port), "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.output()
                assert time.monotonic() < deadline, f"the example never listened: {self.output()}"
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/intuned"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/examples/node copied to a test folder, with ``npm ci`` run there."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm are not installed, so the Node example cannot run")
    folder = tmp_path_factory.mktemp("node-example")
    for name in ("package.json", "package-lock.json", "receiver.mjs"):
        shutil.copy2(EXAMPLES / "node" / name, folder / name)
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"npm ci could not install standardwebhooks (registry unreachable?): {last}")
    return folder


@pytest.fixture
async def worker(start_inproc_worker: StartInprocWorker) -> None:
    await start_inproc_worker()


def example_command(language: str, node_folder: Path | None) -> tuple[list[str], Path]:
    if language == "python":
        return [sys.executable, "receiver.py"], EXAMPLES / "python"
    assert node_folder is not None
    return [str(shutil.which("node")), "receiver.mjs"], node_folder


@pytest.fixture(params=["python", "node"])
def example_receiver(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    node_folder = request.getfixturevalue("node_example") if request.param == "node" else None
    return request.param, lambda secret: Example(
        *example_command(request.param, node_folder), secret, tmp_path / "example.log"
    )


async def test_the_example_receiver_verifies_a_real_delivery(
    api: AsyncTestClient[Any],
    fake_intuned: FakeIntunedHandle,
    worker: None,
    example_receiver: tuple[str, Any],
) -> None:
    language, start = example_receiver
    secret = (await api.get("/v1/signing-secret", headers=AUTH_ALPHA)).json()["secret"]
    example: Example = start(secret)
    try:
        created = httpx.post(
            f"{fake_intuned.root_url}/_fake/runs",
            json={
                "projectName": "docs-example",
                "script": {"pendingPolls": 1, "outcome": "completed", "result": {"rows": 3}},
            },
            timeout=5,
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["runId"]
        registration = {
            "projectName": "docs-example",
            "runId": run_id,
            "callbackUrl": example.url,
            "metadata": {"order": 42},
        }
        resp = await api.post("/v1/subscriptions", json=registration, headers=AUTH_ALPHA)
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]

        async def delivered() -> bool:
            return await subscription_state(api, sid, AUTH_ALPHA) == "delivered"

        await wait_until(delivered, timeout=20)
        view = (await api.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA)).json()
        assert [a["statusCode"] for a in view["attempts"]] == [204]
        line = f"verified run.completed run {run_id} webhook-id msg_"
        await wait_until(lambda: line in example.output(), timeout=5)
        assert example.output().count(line) == 1, example.output()
        assert 'metadata {"order":42}' in example.output().replace(": ", ":"), language

        # A forged request (right headers, wrong signature) is refused and not acted on.
        forged = httpx.post(
            example.url,
            content=b'{"type":"run.completed","data":{"runId":"x","metadata":{}}}',
            headers={
                "webhook-id": "msg_forged",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "content-type": "application/json",
            },
            timeout=5,
        )
        assert forged.status_code == 400
        assert "msg_forged" not in example.output()
    finally:
        example.stop()
