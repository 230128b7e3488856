"""The pytest plugin's ini options, in a pytest run of its own (pytester, in a subprocess, where the plugin
loads from its entry point as in a user's project)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import APPS

pytestmark = pytest.mark.integration

CHECK_SETTINGS = """
def test_settings(lambdapool):
    status = lambdapool.request("GET", "/__lambdapool__/status").body
    fidelity = status["fidelity"]
    print("SETTINGS", status["coldStarts"]["fast"], fidelity["asyncRetryDelayS"], fidelity["gatewayTimeoutS"])
"""


def settings(pytester: pytest.Pytester, ini: str) -> str:
    pytester.makeini(f"[pytest]\nlambdapool_project = {APPS / 'behaviours'}\n{ini}")
    pytester.makepyfile(test_settings=CHECK_SETTINGS)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (line,) = [line for line in result.outlines if "SETTINGS" in line]
    return line[line.index("SETTINGS") :].strip()


def test_by_default_the_fixtures_emulator_is_faithful_to_lambda(pytester: pytest.Pytester) -> None:
    assert settings(pytester, "") == "SETTINGS False 60.0 29.0"


def test_ini_options_opt_out_of_costly_rows_for_test_suites(pytester: pytest.Pytester) -> None:
    ini = (
        "lambdapool_fast_cold_starts = true\nlambdapool_async_retry_delay_s = 0.05\nlambdapool_gateway_timeout_s = 3\n"
    )

    assert settings(pytester, ini) == "SETTINGS True 0.05 3.0"


SESSION_TESTS = """
import json

URLS = []


def test_first(lambdapool):
    URLS.append(lambdapool.url)
    assert lambdapool.run("b", "echo", x=1).response["x"] == 1
    assert lambdapool.stats("b", "echo")["counters"]["calls"] == 1
    lambdapool.s3.create_bucket(Bucket="left-behind")
    task_id = lambdapool.submit("b", "echo", x=2)
    lambdapool.wait_for(lambda: lambdapool.task(task_id)["status"] == "DONE")


def test_second_starts_from_a_reset_emulator(lambdapool):
    URLS.append(lambdapool.url)
    assert URLS[0] == URLS[1]  # the same emulator: one start for the session
    assert lambdapool.stats("b", "echo")["counters"]["calls"] == 0
    buckets = [bucket["Name"] for bucket in lambdapool.s3.list_buckets()["Buckets"]]
    assert "left-behind" not in buckets
    assert lambdapool.request("GET", "/public/api/v1/tasks").body["tasks"] == []


def test_a_key_and_the_lambda_client(lambdapool):
    assert lambdapool.run("secured", "hello").status == 401
    keyed = lambdapool.with_key("s3cr3t-key")
    assert keyed.run("secured", "hello", name="you").response == "hello you"
    answer = keyed.lambda_client.invoke(FunctionName="behaviours-dev-secured-hello", Payload=json.dumps({"name": "x"}))
    assert json.loads(answer["Payload"].read()) == "hello x"
"""


def test_one_emulator_serves_the_session_and_is_reset_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nlambdapool_project = {APPS / 'behaviours'}\nlambdapool_fast_cold_starts = true\n")
    pytester.makepyfile(test_session=SESSION_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)


def test_plain_pytest_imports_the_projects_app_and_chalicelib(pytester: pytest.Pytester) -> None:
    project = pytester.path
    (project / "app.py").write_text("from chalice import Chalice\napp = Chalice(app_name='plain')\nVALUE = 42\n")
    (project / "chalicelib").mkdir()
    (project / "chalicelib" / "__init__.py").write_text("HELPER = 'here'\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_imports.py").write_text(
        "import app\nfrom chalicelib import HELPER\n\n\n"
        "def test_it():\n    assert (app.VALUE, HELPER) == (42, 'here')\n"
    )
    pytester.makeini("[pytest]\n")

    pytest_script = Path(sys.executable).with_name("pytest")  # plain pytest: no cwd on sys.path
    result = pytester.run(str(pytest_script), "-p", "no:cacheprovider", "tests")

    result.assert_outcomes(passed=1)
