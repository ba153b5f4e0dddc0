"""Fail when a module in relay/ or workers/ is longer than the house limit (issue 16, item 7).

A module holds one idea; one over the limit should be split by idea, not trimmed of comments.
This script must never change files: it only reads and reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 400
ROOTS = ("relay", "workers")


def oversized(root: Path, limit: int = LIMIT) -> list[tuple[Path, int]]:
    """Every ``*.py`` under the checked roots with more than ``limit`` lines, longest first."""
    found: list[tuple[Path, int]] = []
    for name in ROOTS:
        for path in sorted((root / name).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append((path.relative_to(root), lines))
    return sorted(found, key=lambda item: -item[1])


def main() -> int:
    """Print each oversized module and answer 1 if there is any."""
    root = Path(__file__).resolve().parent.parent
    found = oversized(root)
    for path, lines in found:
        print(f"{path}: {lines} lines (limit {LIMIT}); split it by idea")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
