"""Dataiku's test queries: ``lambdapool test-queries`` (a real process, against an emulator it starts or one
already running) and the pytest plugin collecting them as tests (pytester, in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from lambdapool.emulator.pool._metrics import Counter

from .conftest import SAMPLE_APP, Client

pytestmark = pytest.mark.integration

APP = textwrap.dedent(
    """
    from chalice import Chalice
    from lambdapool import Service
    from lambdapool.chalice import mount

    app = Chalice(app_name="tq")
    calc = Service("calc")
    keyed = Service("keyed", api_keys=["tq-key"])


    @calc.function()
    def add(x: float, y: float):
        return x + y


    @keyed.function()
    def hello(name: str):
        return f"hello {name}"


    mount(app, calc, keyed)
    """
)


def project(tmp_path: Path, add_queries: list[dict[str, object]]) -> Path:
    directory = tmp_path / "tq"
    (directory / "test_queries" / "calc").mkdir(parents=True)
    (directory / "test_queries" / "keyed").mkdir(parents=True)
    (directory / "app.py").write_text(APP)
    (directory / "test_queries" / "calc" / "add.json").write_text(json.dumps(add_queries))
    hello = [{"name": "greets", "q": {"name": "you"}, "expect": "hello you"}]
    (directory / "test_queries" / "keyed" / "hello.json").write_text(json.dumps(hello))
    return directory


PASSING = {"name": "one plus two", "q": {"x": 1, "y": 2}, "expect": 3}
FAILING = {"name": "wrong sum", "q": {"x": 2, "y": 2}, "expect": 5}
BAD_CALL = {"name": "missing y", "q": {"x": 2}}


def test_queries(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "test-queries", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


test_queries.__test__ = False  # type: ignore[attr-defined]


def test_a_failing_expect_and_a_failing_call_make_the_command_fail(tmp_path: Path) -> None:
    result = test_queries(str(project(tmp_path, [PASSING, FAILING, BAD_CALL])))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("playing 4 test queries of ") and "(an emulator started for them)" in lines[0]
    by_name = {line.split("  ")[2]: line for line in lines[1:-1]}
    assert by_name["one plus two"].startswith("PASS  calc/add  ") and by_name["one plus two"].endswith(" ms  3")
    assert by_name["wrong sum"].startswith("FAIL  calc/add  ") and by_name["wrong sum"].endswith("expected 5, got 4")
    assert "400 BadRequest" in by_name["missing y"] and "y" in by_name["missing y"]
    # The keyed service was called with its own key, which the command found in the project it started.
    assert by_name["greets"].startswith("PASS  keyed/hello  ")
    assert lines[-1].startswith("2 passed, 2 failed in ")


def test_passing_queries_against_a_running_emulator_exit_zero(
    tmp_path: Path, start_emulator: Callable[..., Client]
) -> None:
    directory = project(tmp_path, [PASSING])
    emulator = start_emulator(directory)

    refused = test_queries(str(directory), "--url", emulator.url)
    keyed = test_queries(str(directory), "--url", emulator.url, "--api-key", "tq-key")

    assert refused.returncode == 1 and "FAIL  keyed/hello  greets" in refused.stdout and "401" in refused.stdout
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr
    assert "(a running server)" in keyed.stdout and keyed.stdout.splitlines()[-1].startswith("2 passed, 0 failed")
    assert emulator.emulator.services["calc"].endpoints["add"].stats[Counter.CALLS] == 2


def test_a_project_without_queries_or_with_a_broken_file_is_a_usage_error(tmp_path: Path) -> None:
    directory = project(tmp_path, [])
    (directory / "test_queries" / "keyed" / "hello.json").unlink()
    empty = test_queries(str(directory))
    (directory / "test_queries" / "calc" / "add.json").write_text('[{"name": "x"}]')
    broken = test_queries(str(directory))

    assert empty.returncode == 2 and "no test queries in" in empty.stderr
    assert broken.returncode == 2 and "q (the request body) is missing" in broken.stderr


def test_the_sample_apps_queries_pass() -> None:
    result = test_queries(str(SAMPLE_APP))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout.splitlines()[-1]


def test_the_pytest_plugin_collects_each_query_as_a_test(pytester: pytest.Pytester) -> None:
    directory = project(pytester.path, [PASSING, FAILING])
    result = pytester.runpytest_subprocess(str(directory / "test_queries"), "-p", "no:cacheprovider", "-v")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*add.json::one plus two PASSED*",
            "*add.json::wrong sum FAILED*",
            "*hello.json::greets PASSED*",
            "*test query 'wrong sum' of calc/add (add.json): expected 5, got 4*",
        ]
    )


def test_the_plugin_can_be_told_not_to_collect_them(pytester: pytest.Pytester) -> None:
    directory = project(pytester.path, [FAILING])
    pytester.makeini("[pytest]\nlambdapool_test_queries = false\n")
    result = pytester.runpytest_subprocess(str(directory / "test_queries"), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
