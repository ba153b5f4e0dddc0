"""Real headless Chromium for the console's browser tests: Debian's ``chromium`` driven by its
``chromium-driver`` through Selenium 4, plus axe-core run in the page and screenshots.

Without the two executables the tests skip with one line saying so, unless
``RELAY_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing them): then they fail.
Screenshots go to ``RELAY_TEST_ARTIFACTS`` (default ``test-artifacts/``, gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RELAY_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def artifacts_dir() -> Path:
    """Where browser tests leave their screenshots."""
    path = Path(os.environ.get("RELAY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium session (laptop-sized window), quit after the module."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("RELAY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"RELAY_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(f"no browser: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, *extra: Path) -> Path:
    """Save a full-page PNG of the current page as ``name`` (and copy it to ``extra`` paths)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = int(driver.execute_script("return window.innerWidth"))
    driver.set_window_size(1280, max(900, min(height + 140, 4000)))
    path = artifacts_dir() / f"{name}.png"
    driver.save_screenshot(str(path))
    for target in extra:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    driver.set_window_size(max(width, 1280), 900)
    return path


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page (WCAG 2 A and AA)."""
    driver.execute_script(AXE_JS.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',"
        " 'wcag21aa', 'best-practice']}}).then(r => done(r.violations),"
        " e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in result if v.get("impact") in BLOCKING_IMPACTS]
