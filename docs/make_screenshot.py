"""Take docs/dashboard.png: the sample app's dashboard after a few calls and a schedule fired.

    python docs/make_screenshot.py

Needs what the test suite needs (``pip install -e ".[test]"``) and a Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from lambdapool.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as state, Emulator(ROOT / "sample_app", port=0, state_dir=state) as emulator:
        emulator.serve_in_thread()
        base = f"{emulator.url}/public/api/v1"
        for x in range(5):
            requests.post(f"{base}/demo/add/run", json={"x": x, "y": 2}, timeout=30)
        requests.post(f"{base}/demo/divide/run", json={"x": 1, "y": 0}, timeout=30)
        requests.post(f"{base}/311/predict/run", json={"complaint_type": "noise"}, timeout=30)
        requests.post(f"{emulator.url}/__lambdapool__/schedules/311/collector/fire", timeout=60)
        with sync_playwright() as playwright:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(emulator.url + "/__lambdapool__/")
            page.wait_for_selector('[data-endpoint="demo/add"] [data-counter="calls"]')
            page.wait_for_timeout(1500)  # a refresh or two: the figures settle
            page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=False)
            browser.close()


if __name__ == "__main__":
    main()
