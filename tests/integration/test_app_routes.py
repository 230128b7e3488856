"""The Chalice app's own routes under ``lambdapool local``: served as ``chalice local`` serves them (the same
requests sent to a real ``chalice local`` and to the emulator get the same answers), in pipelines of the
app's API handler, behind what API Gateway does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool.emulator import Emulator

from .conftest import APPS, Client, wait_until

pytestmark = pytest.mark.integration

ROUTES_APP = APPS / "routes"
#: The emulator's API Gateway timeout in these tests (29 s scaled down).
CUT_S = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def chalice_local() -> Iterator[str]:
    """A real ``chalice local`` serving the routes app, in a process group of its own (its reloader forks)."""
    port = free_port()
    chalice = str(Path(sys.executable).with_name("chalice"))
    process = subprocess.Popen(
        [chalice, "local", "--port", str(port), "--no-autoreload"],
        cwd=ROUTES_APP,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(url + "/", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    started = Emulator(
        ROUTES_APP,
        port=0,
        state_dir=tmp_path_factory.mktemp("state"),
        aws="none",
        fast_cold_starts=True,
        gateway_timeout_s=CUT_S,
    )
    try:
        started.start()
        started.serve_in_thread()
        yield started
    finally:
        started.close()


Answer = tuple[int, dict[str, str], bytes]

#: The headers whose values must agree (the rest are each server's own: Date, Server, Content-Length).
COMPARED_HEADERS = (
    "content-type",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-max-age",
    "access-control-allow-headers",
    "x-made",
)


def ask(url: str, method: str, path: str, **options: Any) -> Answer:
    response = requests.request(method, url + path, timeout=30, **options)
    headers = {name: response.headers[name] for name in COMPARED_HEADERS if name in response.headers}
    return response.status_code, headers, response.content


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/items/42?a=1&a=2&b=x", {"headers": {"X-Custom": "yes"}}),
    ("PUT", "/items/7", {"json": {"name": "seven"}}),
    ("DELETE", "/items/7", {}),
    ("POST", "/items/7", {}),  # a method the route does not take
    ("GET", "/nowhere", {}),  # no route: API Gateway's 403
    ("GET", "/nowhere", {"headers": {"Authorization": "Bearer x"}}),
    ("OPTIONS", "/cors", {"headers": {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}}),
    ("GET", "/cors", {}),
    ("POST", "/created", {"data": b""}),
    ("POST", "/image", {"data": bytes(range(256)), "headers": {"Content-Type": "application/octet-stream"}}),
    ("GET", "/boom", {}),
    ("GET", "/private", {}),  # no token: the authorizer's 401
    ("GET", "/private", {"headers": {"Authorization": "allow"}}),
    ("GET", "/private", {"headers": {"Authorization": "deny"}}),
    ("GET", "/metrics", {}),  # the app's own /metrics wins over the emulator's
]


def lambda_client(emulator: Emulator) -> Any:
    """A boto3 Lambda client on the emulator's Invoke API."""
    import boto3

    return boto3.client(
        "lambda",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.parametrize(("method", "path", "options"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_a_route_answers_as_chalice_local_answers(
    chalice_local: str, emulator: Emulator, method: str, path: str, options: dict[str, Any]
) -> None:
    expected = ask(chalice_local, method, path, **options)

    assert ask(emulator.url, method, path, **options) == expected


def test_a_fresh_chalice_new_project_answers_hello_world(tmp_path: Path, start_emulator: Callable[..., Client]) -> None:
    chalice = str(Path(sys.executable).with_name("chalice"))
    subprocess.run([chalice, "new-project", "fresh"], cwd=tmp_path, check=True, capture_output=True)

    client = start_emulator(tmp_path / "fresh")

    answer = requests.get(client.url + "/", timeout=30)
    assert (answer.status_code, answer.json()) == (200, {"hello": "world"})


def test_routes_run_in_pipelines_of_the_api_handler_with_its_settings(emulator: Emulator) -> None:
    context = requests.get(emulator.url + "/context", timeout=30).json()

    assert context["pid"] != os.getpid()  # a pipeline, not the emulator
    assert (context["function_name"], context["memory"], context["greeting"]) == ("routes-dev", "256", "hello")
    handler = emulator.status()["appRoutes"]["apiHandler"]
    assert (handler["timeoutS"], handler["memoryMb"]) == (7, 256)
    assert handler["counters"]["calls"] >= 1


def test_the_services_run_routes_are_still_served_by_their_own_pools(emulator: Emulator) -> None:
    answer = requests.post(emulator.url + "/public/api/v1/svc/add/run", json={"x": 1, "y": 2}, timeout=30)

    assert answer.json()["response"] == 3
    assert answer.json()["apiContext"]["pipelineId"].startswith("svc-add-")


def test_a_route_past_the_gateway_timeout_gets_api_gateways_504(emulator: Emulator) -> None:
    answer = requests.get(emulator.url + f"/sleep/{CUT_S * 3}", timeout=30)

    assert (answer.status_code, answer.json()) == (504, {"message": "Endpoint request timed out"})


def test_the_invoke_api_runs_the_api_handler_with_a_proxy_event(emulator: Emulator) -> None:
    client = lambda_client(emulator)
    event = {
        "resource": "/",
        "path": "/",
        "httpMethod": "GET",
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"resourcePath": "/", "httpMethod": "GET", "path": "/api/", "stage": "api"},
        "body": None,
        "isBase64Encoded": False,
    }

    answer = client.invoke(FunctionName="routes-dev", Payload=__import__("json").dumps(event))

    proxy = __import__("json").loads(answer["Payload"].read())
    assert (proxy["statusCode"], proxy["body"]) == (200, '{"hello":"world"}')


def test_registrations_chalice_local_does_not_run_are_listed(emulator: Emulator) -> None:
    assert emulator.catalog.app_routes.not_emulated == ("SQS handler on_job",)
    assert [path for path, _ in emulator.catalog.app_routes.routes][:2] == ["/", "/items/{item_id}"]


def test_the_emulators_metrics_stay_reachable_when_the_app_has_its_own(emulator: Emulator) -> None:
    answer = requests.get(emulator.url + "/__lambdapool__/metrics", timeout=30)

    assert answer.status_code == 200 and "lambdapool_calls_total" in answer.text


def test_a_mistyped_parameter_is_the_same_400_under_chalice_local_and_the_emulator(
    chalice_local: str, emulator: Emulator
) -> None:
    path = "/public/api/v1/svc/add/run"
    body = {"x": "a", "y": 2}  # add(x: int, y: int)

    expected = requests.post(chalice_local + path, json=body, timeout=30)
    answer = requests.post(emulator.url + path, json=body, timeout=30)

    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert answer.status_code == 400 and answer.json()["message"] == "parameter 'x' must be int, got a string"


def test_deployed_a_mistyped_event_is_the_functions_bad_request(emulator: Emulator) -> None:
    client = lambda_client(emulator)

    answer = client.invoke(FunctionName="routes-dev-svc-add", Payload=b'{"x": 1, "y": [2]}')

    assert answer["FunctionError"] == "Unhandled"
    error = __import__("json").loads(answer["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("BadRequest", "parameter 'y' must be int, got an array")
