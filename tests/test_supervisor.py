"""The supervisor's small parts: loopback URLs, and children that outlive a killed supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from relay.supervisor import SUPERVISOR_PID_ENV, local_url
from tests.support.processes import ROOT, cmdline

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from relay.supervisor import stop_with_supervisor
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stop_with_supervisor(os.environ, interval=0.05)
    print("ready", flush=True)
    time.sleep(30)
    """
)
SUPERVISOR = textwrap.dedent(
    f"""
    import os, subprocess, sys, time
    env = {{**os.environ, {SUPERVISOR_PID_ENV!r}: str(os.getpid())}}
    child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], env=env)
    print(child.pid, flush=True)
    time.sleep(30)
    """
)


def test_local_url_turns_wildcards_into_loopback() -> None:
    assert local_url("0.0.0.0", 8080, "/healthz") == "http://127.0.0.1:8080/healthz"
    assert local_url("::", 8080, "") == "http://[::1]:8080"
    assert local_url("10.0.0.5", 1, "/x") == "http://10.0.0.5:1/x"


def test_a_child_stops_itself_when_its_supervisor_is_killed() -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert supervisor.stdout is not None
        child = int(supervisor.stdout.readline())
        assert supervisor.stdout.readline() == "ready\n"  # the child's, on the shared pipe
        os.kill(supervisor.pid, signal.SIGKILL)  # no chance to forward anything
        supervisor.wait(5)
        deadline = time.monotonic() + 10
        while "relay.supervisor" in cmdline(child):  # '' once it exited (even as a zombie)
            assert time.monotonic() < deadline, "the orphaned child kept running"
            time.sleep(0.05)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(5)
        if supervisor.stdout is not None:
            supervisor.stdout.close()
