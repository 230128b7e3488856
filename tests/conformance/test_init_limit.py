"""Lambda's Init limit: init code that runs past it is stopped and run again within the first call, under
the function's timeout ("The Init phase is limited to 10 seconds. If all three tasks do not complete within
10 seconds, Lambda retries the Init phase at the time of the first function invocation with the configured
function timeout", the Lambda developer guide). Against a real emulator whose limit is scaled down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool.emulator import Emulator

from .conftest import APPS, lambda_client, served

#: The Init limit in these tests: Lambda's 10 s, scaled down (the app's slow inits take 1 and 2 s).
INIT_LIMIT_S = 0.5


@pytest.fixture(scope="module")
def init_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("init") / "inits.log"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, init_log: Path) -> Iterator[Emulator]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLOW_INIT_LOG", str(init_log))  # the pipelines inherit it
        with served(APPS / "slow_init", tmp_path_factory.mktemp("state"), init_limit_s=INIT_LIMIT_S) as started:
            yield started


def run(emulator: Emulator, endpoint: str) -> requests.Response:
    return requests.post(f"{emulator.url}/public/api/v1/slow/{endpoint}/run", data=b"{}", timeout=60)


def counters(emulator: Emulator, endpoint: str) -> dict[str, Any]:
    return emulator.status()["services"]["slow"]["endpoints"][endpoint]["counters"]


def inits(init_log: Path, function: str) -> int:
    return init_log.read_text().splitlines().count(function) if init_log.exists() else 0


def test_an_init_past_the_limit_runs_again_within_the_first_call_and_serves_it(
    emulator: Emulator, init_log: Path
) -> None:
    answer = run(emulator, "fits")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["response"]["served"] is True and body["apiContext"]["coldStart"] is True
    # the init run again (1 s of sleep at least) used part of the call's 5 s, and the function is told so
    assert body["response"]["remainingMs"] <= 4000
    assert inits(init_log, "slowinit-dev-slow-fits") == 2  # stopped at the limit, then run again in full
    assert counters(emulator, "fits")["initReruns"] == 1
    assert run(emulator, "fits").json()["apiContext"]["coldStart"] is False  # then warm, as on Lambda
    assert inits(init_log, "slowinit-dev-slow-fits") == 2


def test_an_init_run_again_past_timeout_s_fails_the_call_as_a_timeout(emulator: Emulator) -> None:
    answer = run(emulator, "short")

    assert (answer.status_code, answer.json()["errorType"]) == (504, "Timeout")
    assert answer.json()["message"] == "slow/short ran longer than timeout_s=1"
    assert "Init limit" in answer.json()["detailedMessage"]
    assert counters(emulator, "short")["initReruns"] >= 1


def test_the_invoke_api_answers_lambdas_sandbox_timedout_for_it(emulator: Emulator) -> None:
    client = lambda_client(emulator)

    answer = client.invoke(FunctionName="slowinit-dev-slow-short", Payload=b"{}")

    assert answer["FunctionError"] == "Unhandled"
    payload = json.loads(answer["Payload"].read())
    assert payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"].endswith("Error: Task timed out after 1.00 seconds")


def test_an_init_within_the_limit_runs_once(emulator: Emulator, init_log: Path) -> None:
    assert run(emulator, "quick").json()["response"] == "quick"

    assert inits(init_log, "slowinit-dev-slow-quick") == 1
    assert counters(emulator, "quick")["initReruns"] == 0
