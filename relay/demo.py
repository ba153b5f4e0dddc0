"""``relay demo``: the whole relay on loopback with a fake Intuned, showing a newcomer what it does.

It starts the bundled fake Intuned and a small receiver in threads, an embedded Redis in a temp
directory, and the relay's API and worker as child processes (the ``relay up`` supervisor); then
registers a few scripted runs through the public API, starts one more run through the relay
(``POST /v1/runs``: Intuned's sink pushes to the relay when it ends), and prints, as they happen,
each poll the fake answers, each terminal status and push, and each webhook arriving with its
signature verified. It
exits 0 once every subscription is delivered (1 if not within the deadline), or keeps running
for the user's own ``curl`` with ``keep_running``. It never reads the user's relay settings:
every variable the children see is set here.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from relay.demo_receiver import Delivery, DemoReceiver, VerificationError, verify_webhook
from relay.embedded_redis import EmbeddedRedis, free_port
from relay.fake_intuned import CreateRun, FakeIntuned, FakeIntunedHandle, RunScript, start_in_thread
from relay.fake_intuned.control_client import FakeControl
from relay.model import FINAL_STATES, TERMINAL_STATUSES, EventType, SubState
from relay.supervisor import Supervisor, forwarded_signals, http_ok, local_url

DEMO_WORKSPACE = "123e4567-e89b-12d3-a456-426614174000"
DEADLINE_SECONDS = 45.0
INTERRUPTED = 130
_ENV_PREFIXES = ("RELAY_", "INTUNED_", "REDIS_URL")

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Scenario:
    """One scripted run and where its webhook goes."""

    project: str
    story: str
    script: RunScript
    path: str


SCENARIOS = (
    Scenario(
        "price-scraper",
        "completes after a few polls",
        RunScript(
            pending_polls=2,
            started_polls=1,
            outcome="completed",
            result={"products": [{"name": "espresso", "price": 3.2}]},
        ),
        "/hooks/orders",
    ),
    Scenario(
        "login-check",
        "fails",
        RunScript(pending_polls=1, started_polls=1, outcome="failed"),
        "/hooks/alerts",
    ),
    Scenario(
        "nightly-export",
        "is canceled by a user",
        RunScript(pending_polls=1, outcome="canceled"),
        "/hooks/alerts",
    ),
    Scenario(
        "inventory-sync",
        "completes; the receiver answers 503 once",
        RunScript(pending_polls=1, outcome="completed", result={"synced": 42}),
        "/hooks/flaky",
    ),
)


# Started through the relay (POST /v1/runs) rather than registered by id: the fake ends it after
# about 4 s and pushes its sink payload to the relay, which polls it at once.
STARTED = Scenario(
    "report-builder",
    "started through the relay; Intuned's push says when it ends",
    RunScript(pending_seconds=2, started_seconds=2, result={"pages": 12}),
    "/hooks/reports",
)


@dataclass
class Tracked:
    """A registered scenario: its run, subscription and what was already printed."""

    scenario: Scenario
    run_id: str
    subscription_id: str = ""
    state: str = SubState.WATCHING
    attempts: list[Any] = field(default_factory=list)


def demo_env(
    *, redis_url: str, fake: FakeIntunedHandle, api_key: str, port: int, metrics_port: int
) -> dict[str, str]:
    """The children's environment: the caller's, minus its relay settings, plus the demo's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.update(
        {
            "REDIS_URL": redis_url,
            "INTUNED_API_BASE_URL": fake.base_url,
            "INTUNED_WORKSPACE_ID": fake.workspace_id,
            "INTUNED_API_KEY": fake.api_key,
            "RELAY_API_KEYS": f"demo:{api_key}",
            "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
            "RELAY_POLL_INTERVAL": "500ms",
            "RELAY_POLL_MAX_INTERVAL": "1s",
            "RELAY_RETRY_SCHEDULE": "1s,5s,30s",
            "RELAY_DELIVERY_TIMEOUT": "5s",
            "RELAY_HOST": "127.0.0.1",
            "RELAY_PORT": str(port),
            # Intuned (the fake) reaches the relay's push ingress here.
            "RELAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "RELAY_WORKER_METRICS_PORT": str(metrics_port),
            "RELAY_SHUTDOWN_GRACE": "5s",
            "RELAY_LOG_FORMAT": "json",
            # The console is opened over plain http on loopback: cookies cannot be Secure.
            "RELAY_CONSOLE_SECURE_COOKIE": "false",
        }
    )
    return env


class Demo:
    """One demo session: the pieces it started, and the printing of what happens."""

    def __init__(self, echo: Echo, *, keep_running: bool, port: int = 0) -> None:
        self.echo = echo
        self.keep_running = keep_running
        self.port = port or free_port()
        self.api_key = "demo-" + secrets.token_urlsafe(24)
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.tracked: list[Tracked] = []
        self.polls_seen: dict[str, int] = {}
        self.pushes_seen = 0
        self.ended_wall: dict[str, float] = {}
        self.secret = ""
        self.shown_body = False
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        """Print a line stamped with the time since the demo started."""
        self.echo(f"{time.monotonic() - self.started:6.2f}s  {text}")

    def run(self) -> int:
        """Run the demo; the exit code."""
        with (
            tempfile.TemporaryDirectory(prefix="relay-demo-") as tmp,
            forwarded_signals(self.stop.set),
        ):
            # With --keep-running the logs outlive the demo, so the user can read them after.
            logs = Path(tempfile.mkdtemp(prefix="relay-demo-logs-")) if self.keep_running else None
            return self._run(Path(tmp), (logs or Path(tmp)) / "relay.log")

    def _run(self, tmp: Path, log_path: Path) -> int:
        fake = start_in_thread(FakeIntuned({DEMO_WORKSPACE: "fake-" + secrets.token_hex(12)}))
        control = FakeControl(fake.root_url)  # the demo drives the fake only over its HTTP API
        receiver = DemoReceiver()
        redis = EmbeddedRedis(tmp / "redis", persistent=False)
        sup: Supervisor | None = None
        try:
            receiver.start()
            redis.start()
            env = demo_env(
                redis_url=redis.url,
                fake=fake,
                api_key=self.api_key,
                port=self.port,
                metrics_port=free_port(),
            )
            self._banner(fake, receiver, redis, env)
            with log_path.open("wb") as log:
                sup = Supervisor(env, grace=5.0, echo=self.echo, output=log)
                sup.start()
                health = local_url("127.0.0.1", self.port, "/healthz")
                if not sup.wait_ready(lambda: http_ok(health), DEADLINE_SECONDS):
                    return self._fail("the relay did not come up", log_path, sup)
                self.say(f"relay is up: API + worker (their JSON logs go to {log_path})")
                code = self._scenarios(control, receiver, sup)
                if code == INTERRUPTED:
                    return code
                if code:
                    return self._fail("", log_path, sup)
                if not self.keep_running:
                    return 0
                self._invite(fake, receiver, log_path)
                while not self.stop.wait(0.1):
                    self._polls(control)
                    self._drain(receiver)
                    if sup.dead_child() is not None:
                        return self._fail("a relay process died", log_path, sup)
                self.echo(f"relay demo: stopping; the relay's logs are kept in {log_path}")
                return 0
        finally:
            control.close()
            if sup is not None:
                sup.stop()
            redis.stop()
            receiver.stop()
            fake.stop()

    def _banner(
        self,
        fake: FakeIntunedHandle,
        receiver: DemoReceiver,
        redis: EmbeddedRedis,
        env: dict[str, str],
    ) -> None:
        self.echo("intuned-relay demo: everything runs on 127.0.0.1 with throw-away data")
        self.echo(f"  fake Intuned   {fake.base_url}")
        self.echo(f"  receiver       {receiver.url('/hooks/...')}")
        self.echo(f"  Redis          {redis.url} (embedded)")
        self.echo(f"  relay API      http://127.0.0.1:{self.port}")
        self.echo(f"  console        http://127.0.0.1:{self.port}/console")
        self.echo(f"  worker metrics http://127.0.0.1:{env['RELAY_WORKER_METRICS_PORT']}/metrics")
        self.say("starting the relay's API and worker ...")

    def _scenarios(self, control: FakeControl, receiver: DemoReceiver, sup: Supervisor) -> int:
        base = f"http://127.0.0.1:{self.port}"
        auth = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as api:
            self.secret = api.get("/v1/signing-secret").raise_for_status().json()["secret"]
            self.say("the receiver will verify signatures with this client's signing secret")
            for sc in SCENARIOS:
                run_id = control.create_run(CreateRun(script=sc.script, project_name=sc.project))
                body = {
                    "projectName": sc.project,
                    "runId": run_id,
                    "callbackUrl": receiver.url(sc.path),
                    "metadata": {"demo": sc.project},
                }
                sub = api.post("/v1/subscriptions", json=body).raise_for_status().json()
                self.tracked.append(Tracked(sc, run_id, sub["id"]))
                self.say(
                    f"subscribed {sub['id']}: run {run_id} of {sc.project} ({sc.story}) "
                    f"-> {sc.path}"
                )
            self._start_one(api, control, receiver)
            deadline = self.started + DEADLINE_SECONDS
            next_check = 0.0
            while not self.stop.wait(0.05):
                self._polls(control)
                self._drain(receiver)
                if sup.dead_child() is not None:
                    self.failures.append("a relay process died")
                    return 1
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 0.3
                    if self._all_settled(api):
                        break
                if time.monotonic() > deadline:
                    self.failures.append(f"not every subscription settled in {DEADLINE_SECONDS}s")
                    return 1
            else:
                self.echo("relay demo: interrupted")
                return INTERRUPTED
            self._polls(control)
            self._drain(receiver)
        return self._summary()

    def _start_one(self, api: httpx.Client, control: FakeControl, receiver: DemoReceiver) -> None:
        """Start ``STARTED``'s run through the relay, which hands Intuned a sink to push to."""
        sc = STARTED
        control.configure({"defaultScript": msgspec.to_builtins(sc.script)})
        body: dict[str, Any] = {"projectName": sc.project, "callbackUrl": receiver.url(sc.path)}
        body |= {"api": "reports/monthly", "parameters": {"month": "2026-11"}}
        headers = {"Idempotency-Key": "demo-" + secrets.token_hex(8)}
        out = api.post("/v1/runs", json=body, headers=headers).raise_for_status().json()
        self.tracked.append(Tracked(sc, out["runId"], out["subscription"]["id"]))
        self.say(
            f"started  run {out['runId']} of {sc.project} with POST /v1/runs ({sc.story}) "
            f"-> {sc.path}"
        )

    def _polls(self, control: FakeControl) -> None:
        """Print every poll the fake answered since last time (scripted runs and the user's),
        and every sink push it made."""
        pushes = control.pushes()
        for push in pushes[self.pushes_seen :]:
            answer = push.status_code or push.note
            self.say(f"push     Intuned's sink pushed run {push.run_id} to the relay ({answer})")
        self.pushes_seen = len(pushes)
        for run_id in control.run_ids():
            stats = control.run_stats(run_id)
            if stats.ended_wall is not None:
                self.ended_wall[run_id] = stats.ended_wall
            seen = self.polls_seen.get(run_id, 0)
            for record in stats.log[seen:]:
                status = record.status or f"HTTP {record.http_status}"
                final = status in TERMINAL_STATUSES
                mark = "  (terminal)" if final else ""
                self.say(f"poll     {stats.project_name:<15} Intuned says {status}{mark}")
            self.polls_seen[run_id] = len(stats.log)

    def _drain(self, receiver: DemoReceiver) -> None:
        while not receiver.deliveries.empty():
            self._show(receiver.deliveries.get_nowait())

    def _show(self, d: Delivery) -> None:
        try:
            event = verify_webhook(self.secret, d.headers, d.body)
        except VerificationError as exc:
            self.failures.append(f"a webhook to {d.path} did not verify: {exc}")
            self.say(f"webhook  {d.path}: signature INVALID ({exc})")
            return
        data = event.get("data", {})
        project = data.get("projectName", "?")
        note = "" if d.answered < 300 else f"; answered {d.answered}, the relay will retry"
        ended = self.ended_wall.get(data.get("runId", ""))
        if ended is not None and data.get("projectName") == STARTED.project:
            note += f"; {d.wall - ended:.2f}s after the fake finished the run"
        self.say(
            f"webhook  {project:<15} {event.get('type')} -> {d.path}  "
            f"signature VERIFIED  webhook-id {d.headers.get('webhook-id')}{note}"
        )
        if not self.shown_body and event.get("type") == EventType.COMPLETED and d.answered < 300:
            self.shown_body = True
            pretty = json.dumps(event, indent=2, ensure_ascii=False)
            self.echo("         the body it received:\n" + _indent(pretty, 9))

    def _all_settled(self, api: httpx.Client) -> bool:
        for t in self.tracked:
            if t.state in FINAL_STATES:
                continue
            view = api.get(f"/v1/subscriptions/{t.subscription_id}").raise_for_status().json()
            t.state, t.attempts = view["state"], view["attempts"]
        return all(t.state in FINAL_STATES for t in self.tracked)

    def _summary(self) -> int:
        self.echo("summary:")
        for t in self.tracked:
            codes = ", ".join(str(a.get("statusCode") or a.get("error")) for a in t.attempts)
            self.echo(f"  {t.scenario.project:<15} run {t.run_id}  {t.state:<10} attempts: {codes}")
        bad = [t for t in self.tracked if t.state != SubState.DELIVERED]
        if bad or self.failures:
            self.failures += [f"{t.subscription_id} ended {t.state}" for t in bad]
            return 1
        elapsed = time.monotonic() - self.started
        self.echo(f"all {len(self.tracked)} webhooks delivered and verified in {elapsed:.1f}s")
        return 0

    def _invite(self, fake: FakeIntunedHandle, receiver: DemoReceiver, log_path: Path) -> None:
        api = f"http://127.0.0.1:{self.port}"
        bearer = f"-H 'Authorization: Bearer {self.api_key}'"
        self.echo(
            "\nstill running; try it yourself (Ctrl-C stops everything):\n"
            "  # 1. a run in the fake Intuned that completes after two polls\n"
            f"  curl -s -X POST {fake.root_url}/_fake/runs -H 'content-type: application/json' \\\n"
            '    -d \'{"projectName": "demo-project", "script": {"pendingPolls": 2, '
            '"result": {"hello": "world"}}}\'\n'
            "  # 2. ask the relay to call the receiver when it ends (use the runId from 1.)\n"
            f"  curl -s -X POST {api}/v1/subscriptions {bearer} \\\n"
            "    -H 'content-type: application/json' \\\n"
            '    -d \'{"projectName": "demo-project", "runId": "RUN_ID", '
            f'"callbackUrl": "{receiver.url("/hooks/mine")}"}}\'\n'
            f"  # 3. look at it\n"
            f"  curl -s {api}/v1/subscriptions {bearer}\n"
            f"  # 4. or in a browser: the operator console\n"
            f"  open {api}/console and sign in with the API key {self.api_key}\n"
            f"the relay's JSON logs: {log_path} (kept after the demo stops)\n"
            f"the fake Intuned's control API: `relay fake-intuned --help` ({fake.root_url}/_fake/)"
        )

    def _fail(self, why: str, log_path: Path, sup: Supervisor) -> int:
        if why:
            self.failures.append(why)
        for failure in self.failures:
            self.echo(f"relay demo: {failure}")
        sup.stop()
        if log_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            self.echo("relay demo: the last lines the relay logged:\n" + "\n".join(tail))
        return 1


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line for line in text.splitlines())


def run_demo(echo: Echo, *, keep_running: bool = False, port: int = 0) -> int:
    """Run the demo and return its exit code (0: every webhook delivered and verified)."""
    return Demo(echo, keep_running=keep_running, port=port).run()
