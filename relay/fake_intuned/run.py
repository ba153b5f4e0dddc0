"""One run of the bundled fake Intuned: its scripted lifecycle, its sink, what it answered.

The lifecycle ends ("reached") when the script's poll counts and durations are used up, either
on a poll or when the sink ticker looks (time-driven scripts end without any poll). The result
endpoint shows the terminal status from then on, or ``early_seconds`` later when the push is
scripted to arrive early. This module does no I/O and takes no lock: ``FakeState`` holds its
lock around every call. It must never be imported by the relay's API or workers.
"""

from __future__ import annotations

from typing import Any

from relay.fake_intuned.models import PollRecord, PushFaults, RunScript, RunStats


class FakeRun:
    """One run: its script, its progress through the lifecycle and what it answered so far."""

    def __init__(
        self, run_id: str, project: str, workspace: str, script: RunScript, created_at: float
    ) -> None:
        self.run_id, self.project, self.workspace = run_id, project, workspace
        self.script = script
        self.created_at = created_at
        self.fallback_result: Any = None
        self.api = "demo-api"
        self.parameters: Any = {}
        self.auth_session_id: str | None = None
        self.sink: dict[str, Any] | None = None
        self.push_faults = PushFaults()
        self.pushed = False
        self.pending_answers = 0
        self.started_answers = 0
        self.ended_at: float | None = None
        self.ended_wall: float | None = None
        self.visible_at = 0.0
        self.terminal: str | None = None
        self.flip_left = 0
        self.log: list[PollRecord] = []
        self.first_terminal: PollRecord | None = None

    def _in_pending(self, elapsed: float) -> bool:
        s = self.script
        return self.pending_answers < s.pending_polls or elapsed < s.pending_seconds

    def _in_started(self, elapsed: float) -> bool:
        s = self.script
        return (
            self.started_answers < s.started_polls
            or elapsed < s.pending_seconds + s.started_seconds
        )

    def check_end(self, now: float, wall: float) -> bool:
        """Latch the end of the lifecycle when it is due without a poll; True once ended."""
        if self.ended_at is None:
            elapsed = now - self.created_at
            if self._in_pending(elapsed) or self._in_started(elapsed):
                return False
            self._end(now, wall)
        return True

    def _end(self, now: float, wall: float) -> None:
        self.ended_at, self.ended_wall = now, wall
        early = self.push_faults.early_seconds if self.sink is not None else 0.0
        self.visible_at = now + early

    def next_status(self, now: float, wall: float) -> str:
        """The status of this answer; advances the lifecycle (terminal is latched)."""
        if self.terminal is not None:
            if self.flip_left > 0:
                self.flip_left -= 1
                return "started"
            return self.terminal
        if self.ended_at is None:
            elapsed = now - self.created_at
            if self._in_pending(elapsed):
                self.pending_answers += 1
                return "pending"
            if self._in_started(elapsed):
                self.started_answers += 1
                return "started"
            self._end(now, wall)
        if now < self.visible_at:
            return "started"
        s = self.script
        self.terminal = s.outcome
        self.flip_left = s.flip_back_polls if s.flip_back_after_terminal else 0
        return s.outcome

    def stats(self) -> RunStats:
        """A snapshot of the counters and the poll log."""
        by_http: dict[int, int] = {}
        by_status: dict[str, int] = {}
        for rec in self.log:
            by_http[rec.http_status] = by_http.get(rec.http_status, 0) + 1
            if rec.status is not None:
                by_status[rec.status] = by_status.get(rec.status, 0) + 1
        first = self.first_terminal
        return RunStats(
            run_id=self.run_id,
            project_name=self.project,
            workspace_id=self.workspace,
            created_at=self.created_at,
            polls=len(self.log),
            by_http_status=by_http,
            by_run_status=by_status,
            first_terminal_at=first.at if first else None,
            first_terminal_wall=first.wall if first else None,
            terminal_status=first.status if first else None,
            ended_at=self.ended_at,
            ended_wall=self.ended_wall,
            sink=self.sink,
            log=list(self.log),
        )
