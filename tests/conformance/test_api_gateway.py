"""API Gateway in front of routes: the integration timeout and the 6 MB limit on the encoded proxy event and
response, against a real emulator and, for what the adapter answers, against the adapter under
``chalice.test`` and deployed (its API handler forwarding to the emulator's Invoke API)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from chalice.test import Client as ChaliceClient

from lambdapool.emulator import Emulator

from ..lambda_events import api_gateway_event
from .conftest import APPS, app_module, lambda_client, served

GATEWAY_APP = APPS / "gateway"
#: The emulator's gateway timeout in these tests: API Gateway's 29 s, scaled down.
CUT_S = 0.5
#: A result of this many one-letter strings is 4.4 MB as JSON and over 6 MB once escaped for API Gateway.
ESCAPES_OVER = 1_100_000
TIMED_OUT = {"message": "Endpoint request timed out"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with served(GATEWAY_APP, tmp_path_factory.mktemp("state"), gateway_timeout_s=CUT_S) as started:
        yield started


@pytest.fixture(scope="module")
def gateway_module() -> Iterator[ModuleType]:
    with app_module(GATEWAY_APP, "conformance_gateway_app") as module:
        yield module


def run(emulator: Emulator, endpoint: str, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{emulator.url}/public/api/v1/gw/{endpoint}/run", data=data, timeout=60)


def endpoint_status(emulator: Emulator, endpoint: str) -> dict[str, Any]:
    return emulator.status()["services"]["gw"]["endpoints"][endpoint]


def counters(emulator: Emulator, endpoint: str) -> dict[str, int]:
    return endpoint_status(emulator, endpoint)["counters"]


def wait_for(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- the integration timeout ----------------------------------------------------------------------------


def test_a_route_is_cut_at_the_gateway_timeout_with_api_gateways_504_and_the_call_goes_on(
    emulator: Emulator, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    before = counters(emulator, "held")

    answer = run(emulator, "held", {"gate": str(gate)})

    assert (answer.status_code, answer.json()) == (504, TIMED_OUT)
    assert answer.headers["Content-Type"] == "application/json"
    assert counters(emulator, "held")["gatewayTimeouts"] == before["gatewayTimeouts"] + 1
    assert endpoint_status(emulator, "held")["pipelines"]["busy"] == 1  # still running, as on Lambda
    gate.touch()
    wait_for(lambda: Path(f"{gate}.done").exists(), "the function to run to its end")
    wait_for(lambda: counters(emulator, "held")["succeeded"] == before["succeeded"] + 1, "its success, counted")


def test_a_call_queued_when_the_gateway_gives_up_still_runs_in_its_turn(emulator: Emulator, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    before = counters(emulator, "held")
    assert run(emulator, "held", {"gate": str(first)}).status_code == 504  # holds the one pipeline

    assert run(emulator, "held", {"gate": str(second)}).json() == TIMED_OUT  # cut while queued
    first.touch()
    second.touch()

    wait_for(lambda: Path(f"{second}.done").exists(), "the queued call to run")
    wait_for(lambda: counters(emulator, "held")["succeeded"] == before["succeeded"] + 2, "both successes")


def test_the_invoke_api_is_not_behind_api_gateway_and_is_not_cut(emulator: Emulator, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    client = lambda_client(emulator)
    answers: list[dict[str, Any]] = []
    invoking = threading.Thread(
        target=lambda: answers.append(client.invoke(FunctionName="gw-held", Payload=json.dumps({"gate": str(gate)})))
    )
    invoking.start()
    try:
        invoking.join(4 * CUT_S)
        assert invoking.is_alive()  # well past the gateway timeout, still waiting for its function
    finally:
        gate.touch()
        invoking.join(60)
    (answer,) = answers
    assert (answer["StatusCode"], json.loads(answer["Payload"].read())) == (200, "done")


# -- the encoded response -------------------------------------------------------------------------------


def check_response_too_large(status: int, body: dict[str, Any]) -> None:
    assert (status, body["errorType"]) == (500, "Function.ResponseSizeTooLarge")
    assert body["message"].endswith("exceeded maximum allowed payload size (6291556 bytes).")
    assert "API Gateway" in body["detailedMessage"]


def test_a_result_under_6_mb_that_escapes_over_it_fails_as_deployed(emulator: Emulator) -> None:
    answer = run(emulator, "strings", {"n": ESCAPES_OVER})

    check_response_too_large(answer.status_code, answer.json())
    assert run(emulator, "strings", {"n": 1000}).json()["response"] == ["a"] * 1000


def test_under_chalice_test_the_adapter_answers_the_same(
    gateway_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDAPOOL_FORWARD", "0")
    with ChaliceClient(gateway_module.app, project_dir=str(GATEWAY_APP)) as client:
        answer = client.http.post("/public/api/v1/gw/strings/run", body=json.dumps({"n": ESCAPES_OVER}).encode())
        check_response_too_large(answer.status_code, answer.json_body)
        too_big = client.http.post("/public/api/v1/gw/size/run", body=escaping_body())
        check_event_too_large(too_big.status_code, too_big.json_body)


class LambdaContext:
    """A stand-in for the context object Lambda passes the API handler (no Lambda runs here)."""

    aws_request_id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    function_name = "gateway-dev"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gateway-dev"
    memory_limit_in_mb = "128"
    log_group_name = "/aws/lambda/gateway-dev"
    log_stream_name = "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def test_deployed_the_api_handler_answers_the_same_instead_of_api_gateways_502(
    gateway_module: ModuleType, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "gateway-dev")  # Chalice's API handler, deployed
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.url)  # its invokes reach the emulator's Invoke API
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    path = "/public/api/v1/gw/strings/run"
    before = counters(emulator, "strings")["succeeded"]

    answer = gateway_module.app(api_gateway_event(path, {"n": ESCAPES_OVER}), LambdaContext())

    check_response_too_large(answer["statusCode"], json.loads(answer["body"]))
    assert counters(emulator, "strings")["succeeded"] == before + 1  # the function's own Lambda returned it
    small = gateway_module.app(api_gateway_event(path, {"n": 3}), LambdaContext())
    assert json.loads(small["body"])["response"] == ["a", "a", "a"]


# -- the encoded event ----------------------------------------------------------------------------------


def escaping_body() -> bytes:
    """A 4.5 MB JSON body (under the 6 MB limit) whose escaped copy in API Gateway's event is over it."""
    body = json.dumps({"rows": ['"q"'] * 500_000}).encode()
    assert len(body) < 6 * 2**20
    return body


def check_event_too_large(status: int, body: dict[str, Any]) -> None:
    assert (status, body["errorType"]) == (413, "PayloadTooLarge")
    assert "makes an API Gateway event of" in body["message"]


def test_a_body_under_6_mb_whose_event_is_over_it_is_refused(emulator: Emulator) -> None:
    answer = run(emulator, "size", escaping_body())

    check_event_too_large(answer.status_code, answer.json())
    assert run(emulator, "size", {"rows": ['"q"'] * 1000}).json()["response"] == 1000


def test_a_task_whose_result_escapes_over_6_mb_cannot_be_read_through_the_gateway(emulator: Emulator) -> None:
    submitted = requests.post(
        f"{emulator.url}/public/api/v1/gw/strings/submit", data=json.dumps({"n": ESCAPES_OVER}), timeout=60
    )
    task_id = submitted.json()["taskId"]

    def read() -> requests.Response:
        return requests.get(f"{emulator.url}/public/api/v1/tasks/{task_id}", timeout=60)

    wait_for(lambda: read().status_code != 200, "the task to finish")  # QUEUED and RUNNING are small

    answer = read()
    check_response_too_large(answer.status_code, answer.json())
    assert emulator.tasks.store.get(task_id).status.value == "DONE"  # the task itself succeeded
