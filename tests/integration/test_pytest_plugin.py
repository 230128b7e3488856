"""The pytest plugin's ini options, in a pytest run of its own (pytester, in a subprocess, where the plugin
loads from its entry point as in a user's project)."""

from __future__ import annotations

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
