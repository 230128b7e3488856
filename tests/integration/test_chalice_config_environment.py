"""The variables of ``.chalice/config.json`` are there when ``app.py`` is first imported to describe the project.

Chalice gives each Lambda function the top level's ``environment_variables``, then the stage's, then the
function's own (``lambda_functions.<name>``) at each level (Chalice's configuration docs, "Environment
variables"), and ``chalice local`` imports ``app.py`` with them set. An app that reads one at import
(``Chalice(app_name=os.environ["APP_NAME"])``) is served by both; here it must start under ``lambdapool local``,
``lambdapool config`` and the pytest plugin, and each pipeline sees its own function's variables alone."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import APPS

pytestmark = pytest.mark.integration

CONFIGURED = APPS / "configured"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "configured"
    shutil.copytree(CONFIGURED, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_lambdapool_local_serves_an_app_that_reads_its_configured_variables_at_import(start_cli) -> None:
    process, url, _ = start_cli(CONFIGURED)
    try:
        run = f"{url}/public/api/v1/configured"
        hello = requests.post(f"{run}/hello/run", json={}, timeout=60).json()["response"]
        other = requests.post(f"{run}/other/run", json={}, timeout=60).json()["response"]
        route = requests.get(f"{url}/", timeout=60).json()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert hello == {
        "app": "configured-app",
        "greeting": "hello from dev",
        "token": "only-hello",
        "tokenNow": "only-hello",
    }
    assert other == {"token": None}  # another function's own variables are not this one's
    assert route == {"app": "configured-app", "greeting": "hello from dev", "token": None}


def test_lambdapool_config_describes_an_app_that_needs_a_functions_own_variable_at_import(project: Path) -> None:
    # Only configured-hello is deployed with HELLO_TOKEN; an app of that one function reads it at import.
    source = (project / "app.py").read_text()
    source = source.replace('os.environ.get("HELLO_TOKEN")', 'os.environ["HELLO_TOKEN"]')
    source = source[: source.index("@configured.function()\ndef other")] + "mount(app, configured)\n"
    (project / "app.py").write_text(source)

    result = subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "config", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    functions = json.loads((project / ".chalice" / "config.json").read_text())["stages"]["dev"]["lambda_functions"]
    assert functions["configured-hello"]["environment_variables"] == {"HELLO_TOKEN": "only-hello"}
    assert functions["configured-hello"]["lambda_timeout"] == 60


PLUGIN_TEST = """
def test_configured(lambdapool):
    assert lambdapool.run("configured", "hello").response["greeting"] == "hello from dev"
    assert lambdapool.request("GET", "/").body["app"] == "configured-app"
"""


def test_the_pytest_plugin_serves_an_app_that_reads_its_configured_variables_at_import(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(f"[pytest]\nlambdapool_project = {CONFIGURED}\nlambdapool_fast_cold_starts = true\n")
    pytester.makepyfile(test_configured=PLUGIN_TEST)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
