"""The module-size check of ``.ci/run`` (issue 16, item 7) flags long modules; main passes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_module_size", ROOT / "scripts" / "check_module_size.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flags_a_module_over_the_limit_and_only_that_one(tmp_path: Path) -> None:
    check = _load()
    (tmp_path / "relay" / "deep").mkdir(parents=True)
    (tmp_path / "workers").mkdir()
    (tmp_path / "relay" / "deep" / "long.py").write_text("x = 1\n" * (check.LIMIT + 1))
    (tmp_path / "workers" / "short.py").write_text("x = 1\n" * check.LIMIT)
    (tmp_path / "relay" / "notes.txt").write_text("x\n" * 1000)
    assert check.oversized(tmp_path) == [(Path("relay/deep/long.py"), check.LIMIT + 1)]


def test_the_repository_is_within_the_limit() -> None:
    assert _load().oversized(ROOT) == []
