"""A new user's first hour: the README's two commands, on a fresh copy, with any Python 3.11+.

The commands are read from the README itself, so the README cannot drift from what is tested;
``.ci/run`` must call the test command exactly. The run command is run from a fresh copy of the
repository with Debian's externally managed ``/usr/bin/python3`` when the machine has one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import run  # noqa: E402  (the bootstrap script at the repository root)

SYSTEM_PYTHON = Path("/usr/bin/python3")


def readme_commands() -> list[str]:
    """The one-line commands in the README's ```bash blocks of "Set-up: two commands"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_the_readme_has_two_commands_and_ci_runs_the_test_one_exactly() -> None:
    run_command, test_command = readme_commands()
    assert run_command == "python3 run.py relay demo"
    assert test_command == "python3 run.py pytest"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert not any("pip install" in line for line in ci_lines), "no pip on a fresh machine"


def test_every_platform_pin_is_a_wheel_of_the_pinned_uv_with_a_sha256() -> None:
    assert run.platform_key() in run.UV_WHEELS or sys.platform not in ("linux", "darwin")
    for url, sha256 in run.UV_WHEELS.values():
        assert url.startswith("https://files.pythonhosted.org/")
        assert url.rsplit("/", 1)[1].startswith(f"uv-{run.UV_VERSION}-")
        assert re.fullmatch(r"[0-9a-f]{64}", sha256)


def test_a_download_whose_hash_differs_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    wheel = tmp_path / "uv.whl"
    wheel.write_bytes(b"not the uv wheel")
    target = tmp_path / "uv"
    with pytest.raises(RuntimeError, match="expected 0000"):
        run.install_uv(target, wheel.as_uri(), "0" * 64)
    assert not target.exists()
    # The same file with its own hash gets past the check (and then fails as a non-wheel).
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(Exception, match="zip"):
        run.install_uv(target, wheel.as_uri(), digest)
    assert not (target / "uv").exists()


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.timeout(300)
def test_the_readme_run_command_works_with_an_externally_managed_system_python(
    tmp_path: Path,
) -> None:
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3 on this machine")
    run_command, _ = readme_commands()
    clone = fresh_copy(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    uv = shutil.which("uv")
    if uv:  # else run.py fetches the pinned uv (needs PyPI)
        (bin_dir / "uv").symlink_to(uv)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RELAY_", "INTUNED_", "UV_", "VIRTUAL_ENV", "PYTHON"))
        and k != "REDIS_URL"
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    result = subprocess.run(
        ["bash", "-c", run_command],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"all \d+ webhooks delivered and verified", output), output[-4000:]
    venv_python = (clone / ".venv" / "pyvenv.cfg").read_text()
    assert "3.11.2" in venv_python or str(SYSTEM_PYTHON.resolve().parent) in venv_python
    # run.py's first build compiled the installed packages, one the demo never imports included.
    site = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    assert any((site / "schemathesis").rglob("*.pyc"))
