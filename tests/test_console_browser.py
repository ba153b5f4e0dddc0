"""The operator page in a real browser: headless Chromium signs in, finds a delivered and an
exhausted subscription, opens one, redelivers the exhausted one and sees it delivered, rotates
the signing secret, and gets a 404 page for another client's subscription; axe-core checks
every page. Screenshots of every page are saved (``tests/support/browser.py``).

The relay runs as real processes (``relay api`` on a free port, one ``relay worker``) against
the suite's Redis, the fake Intuned and a loopback receiver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.embedded_redis import free_port
from relay.fake_intuned import FakeIntunedHandle, RunScript
from tests.support.browser import ROOT, artifacts_dir, axe_violations, chromium, screenshot
from tests.support.processes import RelayProcess
from tests.support.receiver import ReceiverHandle
from tests.support.relay_fixtures import ALPHA_KEY, AUTH_ALPHA, AUTH_BETA
from tests.support.workers import StartWorker

__all__ = ["chromium"]  # the fixture, used by name

# RELAY_DOC_SCREENSHOTS=docs/img re-makes the README's screenshots from this test.
DOCS = os.environ.get("RELAY_DOC_SCREENSHOTS")
TERMINAL = ("delivered", "exhausted")
PROJECT = "shop-scraper"


@pytest.fixture
def relay_url(relay_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``relay api`` listening on a free loopback port, console cookies usable over http."""
    port = free_port()
    env = {
        **relay_env,
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_CONSOLE_SECURE_COOKIE": "false",
    }
    proc = RelayProcess(["api"], env, tmp_path / "api.log")
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _subscribe(http: httpx.Client, run_id: str, url: str, auth: dict[str, str]) -> str:
    body = {"projectName": PROJECT, "runId": run_id, "callbackUrl": url}
    resp = http.post("/v1/subscriptions", json=body, headers=auth)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _wait_state(http: httpx.Client, sid: str, states: tuple[str, ...], timeout: float) -> str:
    import time

    deadline = time.monotonic() + timeout
    while True:
        state = str(http.get(f"/v1/subscriptions/{sid}", headers=AUTH_ALPHA).json()["state"])
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def _check_page(driver: Any, name: str, docs_name: str | None = None) -> None:
    extra = (
        [Path(DOCS if Path(DOCS).is_absolute() else ROOT / DOCS) / docs_name]
        if (DOCS and docs_name)
        else []
    )
    screenshot(driver, name, *extra)
    violations = axe_violations(driver)
    assert not violations, [(v["id"], v["help"], len(v["nodes"])) for v in violations]


def test_operator_story_in_chromium(
    chromium: Any,
    relay_url: str,
    fake_intuned: FakeIntunedHandle,
    receiver: ReceiverHandle,
    start_worker: StartWorker,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = chromium
    wait = WebDriverWait(driver, 20)
    start_worker()
    http = httpx.Client(base_url=relay_url, timeout=10)
    run_id = fake_intuned.state.create_run(
        RunScript(outcome="completed", result={"products": [{"sku": i} for i in range(200)]}),
        project_name=PROJECT,
    )
    delivered = _subscribe(http, run_id, receiver.url("/ok/orders"), AUTH_ALPHA)
    exhausted = _subscribe(http, run_id, receiver.url("/flaky/4/alerts"), AUTH_ALPHA)
    watching_run = fake_intuned.state.create_run(
        RunScript(pending_polls=10_000), project_name=PROJECT
    )
    watching = _subscribe(http, watching_run, receiver.url("/ok/later"), AUTH_ALPHA)
    theirs = _subscribe(
        http,
        fake_intuned.state.create_run(RunScript(), project_name=PROJECT),
        receiver.url("/ok"),
        AUTH_BETA,
    )
    assert _wait_state(http, delivered, TERMINAL, 20) == "delivered"
    assert _wait_state(http, exhausted, TERMINAL, 20) == "exhausted"

    # Signing in: a page without a session sends the browser to the form.
    driver.get(relay_url + "/console/subscriptions")
    wait.until(ec.url_contains("/console/sign-in"))
    _check_page(driver, "01-sign-in")
    driver.find_element(By.ID, "api-key").send_keys(ALPHA_KEY)
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign in']").click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//h1[normalize-space()='Overview']")))
    assert "shop-scraper/" + watching_run in driver.page_source, http.get(
        f"/v1/subscriptions/{watching}", headers=AUTH_ALPHA
    ).text
    _check_page(driver, "02-overview", "console-overview.png")

    # The subscriptions table, filtered by state: one delivered, one exhausted.
    driver.find_element(By.LINK_TEXT, "Subscriptions").click()
    wait.until(ec.presence_of_element_located((By.ID, "f-state")))
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "table.subs th")]
    assert {"Run", "Callback", "State", "Updated"} <= set(headers)
    _check_page(driver, "03-subscriptions")
    for state, sid in (("delivered", delivered), ("exhausted", exhausted)):
        Select(driver.find_element(By.ID, "f-state")).select_by_value(state)
        driver.find_element(By.XPATH, "//button[normalize-space()='Filter']").click()
        wait.until(ec.url_contains(f"state={state}"))
        ids = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "table.subs td code")]
        assert ids == [sid], (state, ids)
    _check_page(driver, "04-subscriptions-exhausted")

    # One subscription: the exhausted one, with its attempts; Redeliver brings it home.
    driver.find_element(By.LINK_TEXT, exhausted).click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "sub-state"), "exhausted"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "section table tbody tr")) == 4
    assert "characters in all" in driver.find_element(By.CSS_SELECTOR, "pre.json").text
    _check_page(driver, "05-subscription-exhausted")
    driver.find_element(By.XPATH, "//button[normalize-space()='Redeliver']").click()
    wait.until(ec.url_contains("done=redelivered"))
    WebDriverWait(driver, 20, poll_frequency=0.3).until(
        lambda d: d.refresh() or d.find_element(By.ID, "sub-state").text == "delivered"
    )
    _check_page(driver, "06-subscription-redelivered", "console-subscription.png")
    driver.find_element(By.LINK_TEXT, "Full event JSON").click()
    wait.until(ec.url_contains("event.json"))
    assert '"type":"run.completed"' in driver.page_source.replace(" ", "")
    driver.back()

    # The signing secret: hidden until asked; Rotate makes a new one.
    driver.find_element(By.LINK_TEXT, "Signing secret").click()
    wait.until(ec.url_contains("/console/signing"))
    assert not driver.find_elements(By.ID, "secret")
    _check_page(driver, "07-signing")
    driver.find_element(By.XPATH, "//button[normalize-space()='Show secret']").click()
    before = wait.until(ec.presence_of_element_located((By.ID, "secret"))).get_attribute("value")
    assert before and before.startswith("whsec_")
    driver.find_element(By.XPATH, "//button[normalize-space()='Rotate']").click()
    wait.until(ec.url_contains("done=rotated"))
    driver.find_element(By.XPATH, "//button[normalize-space()='Show secret']").click()
    after = wait.until(ec.presence_of_element_located((By.ID, "secret"))).get_attribute("value")
    assert after and after != before
    assert http.get("/v1/signing-secret", headers=AUTH_ALPHA).json()["secret"] == after
    send_test = driver.find_element(By.XPATH, "//button[normalize-space()='Send test']")
    assert send_test.is_enabled()

    # Another client's subscription is a 404 page, exactly like one that does not exist.
    driver.get(f"{relay_url}/console/subscriptions/{theirs}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Not found"
    shown = driver.find_element(By.TAG_NAME, "main").text
    driver.get(f"{relay_url}/console/subscriptions/sub_{'x' * 22}")
    assert shown == driver.find_element(By.TAG_NAME, "main").text.replace("sub_" + "x" * 22, theirs)
    driver.get(f"{relay_url}/console/subscriptions/{theirs}")
    _check_page(driver, "08-not-found")
    assert http.get(f"/console/subscriptions/{theirs}").status_code in (303, 404)

    # On a phone-sized screen the overview still reads (and passes axe).
    driver.get(relay_url + "/console")
    driver.set_window_size(390, 844)
    try:
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, width  # nothing forces sideways scrolling
        driver.save_screenshot(str(artifacts_dir() / "09-overview-phone.png"))
        assert not axe_violations(driver)
    finally:
        driver.set_window_size(1280, 900)

    # Sign out, and the pages are closed again.
    driver.get(relay_url + "/console")
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait.until(ec.url_contains("/console/sign-in"))
    driver.get(relay_url + "/console")
    wait.until(ec.url_contains("/console/sign-in"))
    http.close()
