"""Reliability 4, the Intuned fault matrix on the bundled fake: one worker process lives through
every kind of trouble Intuned (or the network in front of it) can make, polls within the rules of
``relay.policy``, and sends the right event for every run.

The worker polls every 100 ms growing x1.5 to 300 ms (+-10 % jitter), with a 1 s Intuned timeout.
Poll counts come from the fake's own log of the requests it answered. The fault matrix runs a
worker process (its log and its survival are checked); the 429 storms a worker in the test's loop.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import redis

from relay.fake_intuned import Fault, RateLimitConfig, RunScript
from relay.fake_intuned.models import PollRecord
from relay.policy import POLL_JITTER, next_poll_interval
from tests.support.e2e import E2E
from tests.support.relay_fixtures import wait_until
from tests.support.reliability import error_lines, register_many, state_counts, webhook_counts

BASE, MAXIMUM = 0.1, 0.3  # RELAY_POLL_INTERVAL / RELAY_POLL_MAX_INTERVAL of base_env
SLACK = 0.005  # the relay schedules in whole milliseconds


class _RawData(msgspec.Struct):
    result: msgspec.Raw


class _RawEvent(msgspec.Struct):
    data: _RawData


def policy_min_gaps(n: int) -> list[float]:
    """The shortest gaps relay.policy allows between n+1 consecutive polls of one run."""
    gaps, interval = [], 0.0
    for _ in range(n):
        interval = next_poll_interval(interval, BASE, MAXIMUM)
        gaps.append(interval * (1 - POLL_JITTER))
    return gaps


def policy_max_polls(elapsed: float) -> int:
    """The most polls relay.policy allows within ``elapsed`` seconds (the first one at 0)."""
    polls, at, interval = 1, 0.0, 0.0
    while True:
        interval = next_poll_interval(interval, BASE, MAXIMUM)
        at += interval * (1 - POLL_JITTER)
        if at > elapsed:
            return polls
        polls += 1


def gaps_of(log: list[PollRecord]) -> list[float]:
    """Seconds between consecutive requests the fake answered for one run."""
    return [b.at - a.at for a, b in itertools.pairwise(log)]


def max_per_second(log: list[PollRecord]) -> int:
    """The most polls of one run inside any one-second window."""
    times = [p.at for p in log]
    return max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))


def assert_backoff(log: list[PollRecord], retry_after: float = 0.0) -> tuple[int, int]:
    """Each gap is at least the policy's shortest (and a 429's Retry-After).

    Returns the run's poll count and the most the policy allows in the same time.
    """
    shortest = policy_min_gaps(len(log) - 1)
    for i, (gap, least) in enumerate(zip(gaps_of(log), shortest, strict=True)):
        if log[i].http_status == 429:
            least = max(least, retry_after)
        assert gap >= least - SLACK, (i, gap, least, [(p.http_status, p.at) for p in log])
    allowed = policy_max_polls(log[-1].at - log[0].at)
    assert len(log) <= allowed
    assert max_per_second(log) <= policy_max_polls(1.0)
    return len(log), allowed


def poll_outcomes(worker_log: Path, run_id: str) -> list[str]:
    """What the worker logged for each poll of a run: the error kind, or a terminal status."""
    out = []
    for line in worker_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("event") == "poll" and entry.get("run_id") == run_id:
            out.append(entry.get("kind") or entry.get("status") or entry["outcome"])
    return out


async def _deliver_all(
    e2e: E2E, redis_sync: redis.Redis, runs: dict[str, str], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """Subscribe once per run, wait until all are delivered; the received event per run name."""
    names = list(runs)
    sids = await register_many(e2e.api, [(runs[n], e2e.receiver.url(f"/ok/{n}")) for n in names])
    await wait_until(
        lambda: state_counts(redis_sync, sids) == {"delivered": len(sids)},
        timeout=timeout,
        interval=0.1,
    )
    by_path = {r.path: r for r in e2e.receiver.requests}
    return {n: json.loads(by_path[f"/ok/{n}"].body) for n in names}


async def test_fault_matrix_right_events_and_the_worker_lives(
    e2e: E2E, redis_sync: redis.Redis, tmp_path: Path
) -> None:
    worker = e2e.start_worker()
    fake = e2e.intuned
    done = RunScript(pending_polls=1, outcome="completed", result={"ok": True})
    runs: dict[str, str] = {}
    faults: dict[str, list[Fault]] = {
        "http500": [Fault(kind="error_500", times=3)],
        "http500_html": [Fault(kind="gateway", status=500, times=2)],
        "http502": [Fault(kind="gateway", status=502, times=2)],
        "http503": [Fault(kind="gateway", status=503, times=2)],
        "http504": [Fault(kind="gateway", status=504, body_format="html", times=2)],
        "hang": [Fault(kind="slow", delay_ms=3000, times=2)],
        "reset": [Fault(kind="reset", times=3)],
        "malformed": [Fault(kind="malformed_json", times=3)],
        "shapes": [
            Fault(kind="wrong_shape", shape=shape, times=1)
            for shape in ("list", "no_status", "no_run_id", "wrong_types", "string")
        ],
        "unknown_status": [Fault(kind="unknown_enum", field="status", times=3)],
    }
    for name, its_faults in faults.items():
        runs[name] = fake.state.create_run(done)
        for fault in its_faults:
            fake.state.add_fault(msgspec.structs.replace(fault, run_id=runs[name]))
    failed = RunScript(
        outcome="failed", error={"message": "m", "category": "execution", "code": "script-timeout"}
    )
    for name, field in (("unknown_code", "error.code"), ("unknown_category", "error.category")):
        runs[name] = fake.state.create_run(failed)
        fake.state.add_fault(Fault(kind="unknown_enum", field=field, times=None, run_id=runs[name]))
    runs["unknown_reason"] = fake.state.create_run(RunScript(outcome="canceled"))
    fake.state.add_fault(
        Fault(kind="unknown_enum", field="reason.type", times=None, run_id=runs["unknown_reason"])
    )
    runs["big"] = fake.state.create_run(RunScript(outcome="completed", result=1))
    fake.state.add_fault(
        Fault(kind="big_result", size_bytes=2_000_000, times=None, run_id=runs["big"])
    )
    runs["flip"] = fake.state.create_run(
        RunScript(pending_polls=1, outcome="completed", result=1, flip_back_after_terminal=True)
    )

    events = await _deliver_all(e2e, redis_sync, runs, timeout=40)

    for name in (*faults, "big", "flip"):
        assert events[name]["type"] == "run.completed", name
    for name, its_faults in faults.items():
        stats = fake.state.run_stats(runs[name])
        assert stats.terminal_status == "completed", name
        assert stats.polls >= len(its_faults) + 1, name
    for code in (500, 502, 503, 504):
        assert fake.state.run_stats(runs[f"http{code}"]).by_http_status[code] >= 2
    # The worker saw each fault for what it is and kept watching the run.
    expected = {
        "http500": ["http_5xx"] * 3,
        "http500_html": ["http_5xx"] * 2,
        "http502": ["http_5xx"] * 2,
        "http503": ["http_5xx"] * 2,
        "http504": ["http_5xx"] * 2,
        "hang": ["timeout"] * 2,
        "reset": ["connection"] * 3,
        "malformed": ["bad_body"] * 3,
        "shapes": ["bad_body"] * 5,
    }
    for name, kinds in expected.items():
        seen = poll_outcomes(worker.log_path, runs[name])
        assert seen[: len(kinds)] == kinds and seen[-1] == "completed", (name, seen)
    # An unknown status is not terminal: the watch went on through all three.
    log = fake.state.run_stats(runs["unknown_status"]).log
    assert [p.note for p in log].count("fault:unknown_enum") == 3
    assert log[-1].status == "completed"
    # Unknown values pass through verbatim.
    assert events["unknown_code"]["type"] == "run.failed"
    assert events["unknown_code"]["data"]["error"]["code"] == "x-fake-unknown-code"
    assert events["unknown_category"]["data"]["error"]["category"] == "x-fake-unknown-category"
    assert events["unknown_reason"]["type"] == "run.canceled"
    assert events["unknown_reason"]["data"]["reason"]["type"] == "x-fake-unknown-reason"
    # The 2 MB result arrives byte for byte.
    [big] = [r for r in e2e.receiver.requests if r.path == "/ok/big"]
    sent = msgspec.json.encode({"blob": "x" * (2_000_000 - 12)})
    got = msgspec.json.decode(big.body, type=_RawEvent).data.result
    assert hashlib.sha256(bytes(got)).hexdigest() == hashlib.sha256(sent).hexdigest()
    # The run that flips back from terminal: polling stopped at its first terminal answer.
    flip = fake.state.run_stats(runs["flip"])
    assert flip.log[-1].status == "completed" and flip.polls == 2
    assert webhook_counts(e2e.receiver.requests).most_common(1)[0][1] == 1  # nobody got two

    assert worker.proc.poll() is None
    assert error_lines(tmp_path.glob("worker-*.log")) == []
    print(
        f"\nfault matrix: {len(runs)} runs, {len(events)} right events, polls "
        + ", ".join(f"{n}={fake.state.run_stats(r).polls}" for n, r in runs.items())
    )


async def test_429_storms_polls_stay_within_backoff_and_retry_after(
    e2e: E2E, redis_sync: redis.Redis
) -> None:
    await e2e.start_inproc_worker()
    fake = e2e.intuned
    done = RunScript(outcome="completed", result=1)
    runs = {
        "no_retry_after": fake.state.create_run(done),
        "retry_after_1": fake.state.create_run(done),
    }
    fake.state.add_fault(Fault(kind="rate_limited", times=12, run_id=runs["no_retry_after"]))
    fake.state.add_fault(
        Fault(kind="rate_limited", times=3, retry_after="1", run_id=runs["retry_after_1"])
    )
    await _deliver_all(e2e, redis_sync, runs)
    report = {}
    log = fake.state.run_stats(runs["no_retry_after"]).log
    assert sum(p.http_status == 429 for p in log) == 12
    report["fault, no Retry-After"] = assert_backoff(log)
    log = fake.state.run_stats(runs["retry_after_1"]).log
    assert all(g >= 1.0 - SLACK for g in gaps_of(log)[:3])
    report["fault, Retry-After: 1"] = assert_backoff(log, retry_after=1.0)

    # A storm from the fake's own limiter (2 requests per 1.5 s per run), with and without
    # Retry-After; five runs each need 6 answered polls, so each meets the limiter repeatedly.
    slow = RunScript(pending_polls=5, outcome="completed", result=1)
    for with_header in (True, False):
        fake.state.set_rate_limit(
            RateLimitConfig(limit=2, window_seconds=1.5, retry_after=with_header)
        )
        storm = {f"storm{i}_{with_header}": fake.state.create_run(slow) for i in range(5)}
        await _deliver_all(e2e, redis_sync, storm)
        for name, run_id in storm.items():
            log = fake.state.run_stats(run_id).log
            assert any(p.http_status == 429 for p in log), name
            polls, allowed = assert_backoff(log, retry_after=1.0 if with_header else 0.0)
            report[name] = (polls, allowed)
    fake.state.set_rate_limit(RateLimitConfig(enabled=False))
    print("\n429 storms, polls per run vs most allowed by relay.policy in the same time:")
    for name, (polls, allowed) in report.items():
        print(f"  {name}: polls={polls} allowed<={allowed} (max {policy_max_polls(1.0)}/s)")
