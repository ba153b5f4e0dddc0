#!/usr/bin/env python3
"""Run a command in the project's locked environment, on any Python 3.11+: ``python3 run.py CMD``.

``python3 run.py relay demo`` and ``python3 run.py pytest`` are ``uv run --locked relay demo`` and
``uv run --locked pytest`` on a machine that has nothing but Python: no pip, no venv module, and
possibly an externally managed interpreter (PEP 668, Debian/Ubuntu/Homebrew), which this script
never installs into. It finds uv in this order:

1. ``uv`` on ``PATH`` when it is at least the pinned version;
2. the pinned uv kept privately under ``.relay/uv/<version>/`` (from an earlier run);
3. otherwise it downloads the pinned uv wheel for this platform from PyPI, checks its sha256
   against the hash written below, and unpacks only the ``uv`` executable into ``.relay/uv/``.

Then it replaces itself with ``uv run --locked --project <this directory> CMD...``. uv builds
``.venv`` from ``uv.lock`` with the Python that ran this script (unless ``.venv`` exists already or
``UV_PYTHON`` says otherwise); that first build (``uv sync --locked --compile-bytecode``) also
compiles the installed packages' bytecode once. ``RELAY_UV=private`` skips step 1 (used by the
test of step 3).

Standard library only; it must never install anything outside this directory, never run a file
whose hash was not checked, and never need administrator rights.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"
_PYPI = "https://files.pythonhosted.org/packages"
# Platform -> (wheel URL on PyPI, sha256 of that wheel), from PyPI's simple index for uv 0.13.9.
UV_WHEELS: dict[str, tuple[str, str]] = {
    "linux-x86_64-glibc": (
        f"{_PYPI}/3d/aa/26d64642d808de4a652579ef950d7cd2d37f080a8babf9c67c6b75fc4c3f/"
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    "linux-x86_64-musl": (
        f"{_PYPI}/fe/fe/794884de0efd3ac77a427cab21aa72c0483e100c55a42cd5cbb02c141b84/"
        "uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl",
        "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
    ),
    "linux-aarch64": (
        f"{_PYPI}/57/15/94b6cd62ac3ff6550288328e8035288875197cbc183f51554b266a69877b/"
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
    "darwin-x86_64": (
        f"{_PYPI}/1e/db/08e9ef4879bd667e6d7b4705e594e5bd3e4585f10fc63cb16b9fa2fac63e/"
        "uv-0.13.9-py3-none-macosx_10_12_x86_64.whl",
        "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    ),
    "darwin-arm64": (
        f"{_PYPI}/f3/a7/a8d7b074798c7fb3b26b37584b8fe2e29df2ccdc24ce7902caab2a53edbf/"
        "uv-0.13.9-py3-none-macosx_11_0_arm64.whl",
        "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    ),
    "windows-amd64": (
        f"{_PYPI}/dd/ef/ceeabf3631117f7354787d9fb1ffe943899e59ed4b887a696ed547e47e76/"
        "uv-0.13.9-py3-none-win_amd64.whl",
        "6a44b2ed8111d2f60d2b92627c5dccda3f7ed7570b18ce115e569cd68c28246b",
    ),
    "windows-arm64": (
        f"{_PYPI}/da/d1/d97a5db1f27e077e4d6329223f6b3f719c02c97e4092043f13e628558d05/"
        "uv-0.13.9-py3-none-win_arm64.whl",
        "eeb92051c2123b9730c46b04cc843cfa4bc7d7b0aec56df431a2215ef4cb0273",
    ),
}
ROOT = Path(__file__).resolve().parent
EXE = ".exe" if os.name == "nt" else ""


def say(message: str) -> None:
    print(f"run.py: {message}", file=sys.stderr, flush=True)


def platform_key() -> str:
    """The ``UV_WHEELS`` key of this machine (``linux-x86_64-glibc``, ``darwin-arm64``, ...)."""
    system, machine = platform.system().lower(), platform.machine().lower()
    if machine in ("amd64", "x64"):
        machine = "x86_64"
    if machine in ("arm64", "aarch64"):
        machine = "aarch64" if system == "linux" else "arm64"
    if system == "windows" and machine == "x86_64":
        machine = "amd64"
    if system == "linux" and machine == "x86_64":
        machine += "-glibc" if platform.libc_ver()[0] == "glibc" else "-musl"
    return f"{system}-{machine}"


def version_of(uv: str) -> tuple[int, ...] | None:
    """``uv --version`` as a tuple of ints, or None when it does not run."""
    try:
        out = subprocess.run(  # noqa: S603 (uv from PATH, checked by version)
            [uv, "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    try:
        return tuple(int(p) for p in words[1].split("."))
    except (IndexError, ValueError):
        return None


def uv_on_path() -> str | None:
    """``uv`` from PATH when it is at least the pinned version."""
    uv = shutil.which("uv")
    if uv is None:
        return None
    found = version_of(uv)
    if found is None or found < tuple(int(p) for p in UV_VERSION.split(".")):
        return None
    return uv


def install_uv(target: Path, url: str, sha256: str) -> Path:
    """Download the wheel at ``url``, check ``sha256``, unpack its uv executable into ``target``.

    Raises RuntimeError (and leaves ``target`` untouched) when the hash does not match.
    """
    with tempfile.TemporaryDirectory(prefix="relay-uv-") as tmp:
        wheel = Path(tmp) / "uv.whl"
        with urllib.request.urlopen(url, timeout=120) as response, wheel.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            raise RuntimeError(f"the uv wheel from {url} has sha256 {digest}, expected {sha256}")
        with zipfile.ZipFile(wheel) as archive:
            [member] = [n for n in archive.namelist() if n.endswith(f".data/scripts/uv{EXE}")]
            staged = Path(tmp) / f"uv{EXE}"
            staged.write_bytes(archive.read(member))
        staged.chmod(staged.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        target.mkdir(parents=True, exist_ok=True)
        final = target / f"uv{EXE}"
        shutil.move(str(staged), final)
        return final


def private_uv() -> Path:
    """The pinned uv under ``.relay/uv/``, downloaded and checked on first use."""
    target = ROOT / ".relay" / "uv" / UV_VERSION
    uv = target / f"uv{EXE}"
    if uv.exists():
        return uv
    key = platform_key()
    if key not in UV_WHEELS:
        raise RuntimeError(
            f"no pinned uv wheel for {key}; install uv {UV_VERSION}+ yourself "
            "(https://docs.astral.sh/uv/getting-started/installation/) and run this again"
        )
    say(f"installing uv {UV_VERSION} for {key} into {target} (once)")
    url, sha256 = UV_WHEELS[key]
    return install_uv(target, url, sha256)


def find_uv() -> str:
    if os.environ.get("RELAY_UV") != "private":
        found = uv_on_path()
        if found:
            return found
    return str(private_uv())


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (this runs on whatever python3 is)
        say(f"Python 3.11 or newer is needed; this is {platform.python_version()}")
        return 2
    if not argv:
        say("usage: python3 run.py COMMAND [ARGS...]   e.g. python3 run.py relay demo")
        return 2
    try:
        uv = find_uv()
    except (OSError, RuntimeError) as exc:
        say(f"could not get uv: {exc}")
        return 2
    env = dict(os.environ)
    if not (ROOT / ".venv").exists():
        if "UV_PYTHON" not in env:
            env["UV_PYTHON"] = sys.executable
        # The first build compiles the installed packages' bytecode once, so that no later
        # process compiles them again at start (PYTHONDONTWRITEBYTECODE keeps Python itself
        # from caching it). Later runs keep uv's default: nothing is compiled after a sync.
        sync = [uv, "sync", "--locked", "--compile-bytecode", "--project", str(ROOT)]
        code = subprocess.call(sync, env=env)  # noqa: S603
        if code != 0:
            return code
    command = [uv, "run", "--locked", "--project", str(ROOT), *argv]
    if os.name == "nt":  # no exec on Windows: wait and pass the exit code on
        return subprocess.call(command, env=env)  # noqa: S603
    os.execve(uv, command, env)  # noqa: S606


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
