"""The dashboard at /__lambdapool__/ in a real headless browser (Playwright driving the system's Chromium):
it loads, shows the sample app's endpoints, follows calls live, and its "Fire now" button fires a schedule."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool.emulator import Emulator

from .conftest import SAMPLE_APP

pytestmark = pytest.mark.integration


def find_chromium() -> str | None:
    return os.environ.get("LAMBDAPOOL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_path() -> str:
    """The Chromium to drive: ``LAMBDAPOOL_CHROMIUM``, else the system's. Playwright's own browser download
    needs a CDN; Debian's package needs only the package registry: where it is missing and this runs as
    root on Debian, it is installed (as the benchmarks install ``wrk``), with a message."""
    found = find_chromium()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("\ninstalling Chromium for the dashboard's browser test: apt-get install chromium", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False, capture_output=True, timeout=900)
        found = find_chromium()
    if found is None:
        pytest.fail("no Chromium found: install it (apt-get install chromium) or set LAMBDAPOOL_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(SAMPLE_APP, port=0, state_dir=tmp_path_factory.mktemp("state"), fast_cold_starts=True)
    try:
        emulator.start()
        emulator.serve_in_thread()
        yield emulator
    finally:
        emulator.close()


@pytest.fixture
def page(sample: Emulator) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def counter(page: Any, endpoint: str, name: str) -> str:
    return str(page.text_content(f'[data-endpoint="{endpoint}"] [data-counter="{name}"]'))


def test_the_dashboard_shows_every_endpoint_of_the_sample_app(page: Any, sample: Emulator) -> None:
    page.goto(sample.url + "/__lambdapool__/")

    page.wait_for_selector('[data-endpoint="demo/add"]')
    shown = set(page.eval_on_selector_all("[data-endpoint]", "cards => cards.map(card => card.dataset.endpoint)"))
    expected = {f"{service}/{endpoint}" for service, served in sample.services.items() for endpoint in served.endpoints}
    assert shown == expected
    assert "311/predict" in shown and "311/collector" in shown
    assert page.title() == "lambdapool"


def test_the_dashboard_follows_calls_live(page: Any, sample: Emulator) -> None:
    page.goto(sample.url + "/__lambdapool__/")
    page.wait_for_selector('[data-endpoint="demo/add"] [data-counter="calls"]')
    before = int(counter(page, "demo/add", "calls").split()[-1])

    answer = requests.post(f"{sample.url}/public/api/v1/demo/add/run", json={"x": 1, "y": 2}, timeout=30)
    assert answer.json()["response"] == 3

    page.wait_for_function(
        'expected => document.querySelector(\'[data-endpoint="demo/add"] [data-counter="calls"]\')'
        ".textContent === `calls ${expected}`",
        arg=before + 1,
    )


def test_the_fire_button_fires_the_schedule(page: Any, sample: Emulator, tmp_path: Path) -> None:
    page.goto(sample.url + "/__lambdapool__/")
    page.wait_for_selector('[data-fire="311/collector"]')

    page.click('[data-fire="311/collector"]')

    page.wait_for_selector('[data-endpoint="311/collector"] .fired:has-text("fired:")')
    delivered = sample.status()["services"]["311"]["endpoints"]["collector"]["counters"]["eventsDelivered"]
    assert delivered >= 1
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)  # for a person looking at a failure


def test_slash_and_the_bare_prefix_lead_to_the_dashboard(sample: Emulator) -> None:
    for path in ("/", "/__lambdapool__"):
        answer = requests.get(sample.url + path, timeout=30)
        assert answer.status_code == 200 and answer.url.endswith("/__lambdapool__/")
        assert "<title>lambdapool</title>" in answer.text


def test_the_dashboard_shows_functions_deployed_with_tabpy(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from lambdapool.emulator.tabpy._auth import hash_password
    from lambdapool.tabpy import deploy, query

    passwords = tmp_path / "passwords.txt"
    passwords.write_text(f"alice {hash_password('alice', 'secret')}\n")
    auth = ("alice", "secret")
    emulator = Emulator(
        SAMPLE_APP,
        port=0,
        state_dir=tmp_path / "state",
        fast_cold_starts=True,
        aws="none",
        allow_deploy=True,
        pwd_file=passwords,
    )
    try:
        emulator.start()
        emulator.serve_in_thread()
        deploy(emulator.url, "triple", lambda x: 3 * x, "Triples x", auth=auth)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(30_000)
                page.goto(emulator.url + "/__lambdapool__/")
                page.wait_for_selector('[data-endpoint="tabpy/triple"] [data-counter="calls"]')
                assert query(emulator.url, "triple", 5, auth=auth) == 15
                page.wait_for_function(
                    '() => document.querySelector(\'[data-endpoint="tabpy/triple"] [data-counter="calls"]\')'
                    ".textContent === 'calls 1'"
                )
            finally:
                browser.close()
    finally:
        emulator.close()
