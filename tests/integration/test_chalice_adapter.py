"""The Chalice adapter: Chalice's own test client, the generated Lambda functions, and the run routes
forwarding to a real emulator through boto3 (as they forward to Lambda once deployed)."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from chalice import Chalice
from chalice.test import Client as ChaliceClient

from lambdapool import Service
from lambdapool.chalice import handler_name, mount

from .conftest import APPS, SAMPLE_APP, Client, wait_until
from .moto_aws import moto_server

pytestmark = pytest.mark.integration


def load_app(project: Path, module_name: str) -> ModuleType:
    """Import a project's app.py afresh under ``module_name``, as ``import`` would (its init code runs in this
    process, and the module is in ``sys.modules``, where Chalice's deployer finds the handlers)."""
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location(module_name, project / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(project))


def post(client: ChaliceClient, path: str, body: object = None):
    return client.http.post(path, body=b"" if body is None else json.dumps(body).encode())


@pytest.fixture
def forwarding(monkeypatch: pytest.MonkeyPatch):
    """Make run routes forward with boto3 to an emulator, as they forward to Lambda once deployed."""

    def point_at(emulator: Client, api_function: str) -> None:
        monkeypatch.setenv("LAMBDAPOOL_FORWARD", "1")
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", api_function)
        monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    return point_at


def test_every_sample_endpoint_answers_through_its_route_in_process() -> None:
    module = load_app(SAMPLE_APP, "sample_in_process")
    with ChaliceClient(module.app) as client:
        ok = post(client, "/public/api/v1/demo/add/run", {"x": 1, "y": 2})
        assert ok.status_code == 200 and ok.json_body["response"] == 3
        assert set(ok.json_body) == {"response", "timing", "apiContext"}
        assert (
            post(client, "/public/api/v1/311/predict/run", {"complaint_type": "plumbing"}).json_body["response"][
                "estimated_time"
            ]
            == 11.87
        )
        assert post(client, "/public/api/v1/311/complaint_types/run").json_body["response"]["count"] == 9
        catch_all = post(client, "/public/api/v1/demo/api_py_function/run", {"q": 1}).json_body["response"]
        assert catch_all == {"z": 0, "data": {"q": 1}, "keys": ["q"]}
        assert post(client, "/public/api/v1/demo/slow/run", {"seconds": 0}).status_code == 200
        assert post(client, "/public/api/v1/private/whoami/run").status_code == 401
        key = {"Authorization": "Basic " + base64.b64encode(b"sample-key:").decode()}
        assert client.http.post("/public/api/v1/private/whoami/run", headers=key, body=b"").status_code == 200
        bearer = {"Authorization": "Bearer sample-key"}
        assert client.http.post("/public/api/v1/private/whoami/run", headers=bearer, body=b"").status_code == 200
        for path, body, status, error_type in [
            ("/public/api/v1/311/predict/run", {"complaint_type": "dragons"}, 400, "BadRequest"),
            ("/public/api/v1/demo/add/run", {"x": 1}, 400, "BadRequest"),
            ("/public/api/v1/demo/divide/run", {"x": 1, "y": 0}, 500, "ZeroDivisionError"),
        ]:
            answer = post(client, path, body)
            assert (answer.status_code, answer.json_body["errorType"]) == (status, error_type)
        malformed = client.http.post("/public/api/v1/demo/add/run", body=b"{nope")
        assert malformed.status_code == 400 and malformed.json_body["errorType"] == "BadRequest"


def test_each_endpoint_is_a_pure_lambda_function_resolvable_by_chalice() -> None:
    module = load_app(SAMPLE_APP, "sample_functions")
    functions = {function.name: function for function in module.app.pure_lambda_functions}
    assert set(functions) == {
        "311-predict",
        "311-complaint_types",
        "demo-add",
        "demo-api_py_function",
        "demo-divide",
        "demo-slow",
        "private-whoami",
    }
    for function in functions.values():
        module_name, attribute = function.handler_string.split(".")
        assert module_name == "sample_functions"  # app.py's module: "app" when Chalice imports it
        assert callable(getattr(module, attribute))  # bound in app.py, where the deployer looks
    with ChaliceClient(module.app) as client:
        assert client.lambda_.invoke("demo-add", {"x": 2, "y": 3}).payload == 5


def test_the_lambda_handler_raises_what_the_function_raised() -> None:
    module = load_app(SAMPLE_APP, "sample_handlers")
    handler = getattr(module, handler_name(module.demo.endpoint("divide")))
    with pytest.raises(ZeroDivisionError):
        handler({"x": 1, "y": 0}, None)
    from lambdapool import BadRequest

    with pytest.raises(BadRequest, match="missing required parameter"):
        handler({"x": 1}, None)


def test_a_function_name_over_64_characters_fails_at_mount() -> None:
    app = Chalice(app_name="a-rather-long-application-name")
    service = Service("a-long-service-name")
    service.function(endpoint_id="an-even-longer-endpoint-name")(lambda: None)
    with pytest.raises(ValueError, match="Lambda allows 64"):
        mount(app, service)


def test_inline_endpoints_get_no_function_and_never_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAPOOL_FORWARD", "1")
    app = Chalice(app_name="inline")
    service = Service("s")
    service.function(endpoint_id="here", inline=True)(lambda x: x * 2)
    mount(app, service)
    assert app.pure_lambda_functions == []
    with ChaliceClient(app) as client:
        assert post(client, "/public/api/v1/s/here/run", {"x": 4}).json_body["response"] == 8


def test_run_routes_forward_to_the_endpoint_function_with_boto3(start_emulator, forwarding) -> None:
    emulator = start_emulator(SAMPLE_APP)
    forwarding(emulator, "sample-dev")
    module = load_app(SAMPLE_APP, "sample_forwarding")
    with ChaliceClient(module.app) as client:
        answer = post(client, "/public/api/v1/demo/add/run", {"x": 20, "y": 22})
        assert answer.status_code == 200 and answer.json_body["response"] == 42, answer.body
        assert answer.json_body["apiContext"]["pipelineId"] == "sample-dev-demo-add"
        # Served by the emulator's pool, not in this process.
        assert emulator.endpoint_status("demo", "add")["counters"]["succeeded"] == 1
        # api_py_function scales to zero (its pool file): its first call is a cold start, read from
        # the REPORT line's Init Duration exactly as on AWS.
        cold = post(client, "/public/api/v1/demo/api_py_function/run", {"a": 1}).json_body
        assert cold["apiContext"]["coldStart"] is True and cold["timing"]["coldStart"] > 0
        for path, body, status, error_type in [
            ("/public/api/v1/311/predict/run", {"complaint_type": "dragons"}, 400, "BadRequest"),
            ("/public/api/v1/demo/divide/run", {"x": 1, "y": 0}, 500, "ZeroDivisionError"),
            ("/public/api/v1/demo/slow/run", {"seconds": 30}, 504, "Timeout"),
        ]:
            answer = post(client, path, body)
            assert (answer.status_code, answer.json_body["errorType"]) == (status, error_type), answer.json_body
        assert (
            "Traceback" in post(client, "/public/api/v1/demo/divide/run", {"x": 1, "y": 0}).json_body["detailedMessage"]
        )


def test_a_throttled_forward_is_retried_until_timeout_ms_then_queue_timeout(
    start_emulator, forwarding, tmp_path: Path
) -> None:
    emulator = start_emulator(APPS / "behaviours")
    forwarding(emulator, "behaviours-dev")
    module = load_app(APPS / "behaviours", "behaviours_forwarding")
    gate = tmp_path / "gate"
    emulator.wait_for_pool("b", "gated_short_queue", idle=1)
    with ChaliceClient(module.app) as client, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(post, client, "/public/api/v1/b/gated_short_queue/run", {"gate": str(gate)})
        emulator.wait_for_pool("b", "gated_short_queue", busy=1)
        throttled = post(client, "/public/api/v1/b/gated_short_queue/run", {"gate": str(gate)})
        gate.touch()
        assert busy.result().status_code == 200
    assert throttled.status_code == 429
    assert throttled.json_body["errorType"] == "QueueTimeout"
    assert throttled.headers["Retry-After"] == "1"
    assert "timeout_ms=200" in throttled.json_body["message"]


def test_submit_runs_a_task_in_process_under_chalice_local() -> None:
    module = load_app(SAMPLE_APP, "sample_tasks_local")
    with ChaliceClient(module.app) as client:
        submitted = post(client, "/public/api/v1/demo/add/submit", {"x": 1, "y": 2})
        assert submitted.status_code == 202
        task = client.http.get(f"/public/api/v1/tasks/{submitted.json_body['taskId']}").json_body
        assert (task["status"], task["response"]) == ("DONE", 3)
        failed_id = post(client, "/public/api/v1/demo/divide/submit", {"x": 1, "y": 0}).json_body["taskId"]
        failed = client.http.get(f"/public/api/v1/tasks/{failed_id}").json_body
        assert failed["status"] == "FAILED" and failed["error"]["errorType"] == "ZeroDivisionError"
        assert client.http.get("/public/api/v1/tasks/" + "0" * 32).status_code == 404
        assert post(client, "/public/api/v1/demo/add/submit", {"x": 1}).status_code == 400
        # A task is an asynchronous invocation on AWS: its payload is limited to 1 MB there, so here too.
        too_big = post(client, "/public/api/v1/demo/api_py_function/submit", {"blob": "a" * (1 << 20)})
        assert too_big.status_code == 413 and too_big.json_body["errorType"] == "PayloadTooLarge"


def test_submit_on_aws_invokes_asynchronously_and_keeps_state_in_s3(
    start_emulator, forwarding, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda is the emulator (AWS_ENDPOINT_URL_LAMBDA), S3 a moto server (AWS_ENDPOINT_URL_S3): the
    # endpoint's pipeline runs the task exactly as the deployed function does, writing its state to S3.
    with moto_server() as moto_url:
        for name, value in {
            "AWS_ENDPOINT_URL_S3": moto_url,
            "LAMBDAPOOL_TASK_BUCKET": "sample-tasks",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        emulator = start_emulator(SAMPLE_APP)  # its pipelines inherit the S3 endpoint and credentials
        forwarding(emulator, "sample-dev")
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", emulator.url)
        s3 = boto3.client(
            "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        s3.create_bucket(Bucket="sample-tasks")
        module = load_app(SAMPLE_APP, "sample_tasks_aws")
        with ChaliceClient(module.app) as client:
            task_id = post(client, "/public/api/v1/demo/add/submit", {"x": 40, "y": 2}).json_body["taskId"]
            task = wait_until(
                lambda: (t := client.http.get(f"/public/api/v1/tasks/{task_id}").json_body)["status"] == "DONE" and t
            )
            assert task["response"] == 42 and task["startedAt"] and task["finishedAt"]
            stored = s3.get_object(Bucket="sample-tasks", Key=f"tasks/{task_id}.json")
            assert json.loads(stored["Body"].read())["status"] == "DONE"
            # the pipeline stores DONE before it answers the invocation: the count comes just after
            wait_until(lambda: emulator.endpoint_status("demo", "add")["counters"]["succeeded"] == 1)


def test_chalice_local_serves_the_sample_project_from_its_directory(spawn) -> None:
    """``cd sample_app && chalice local``, as the README says (its .chalice is the top-level one). Its
    autoreloader runs the server in a child process: the ``spawn`` fixture ends the whole group."""
    import socket
    import subprocess

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chalice = str(Path(sys.executable).with_name("chalice"))
    spawn([chalice, "local", "--port", str(port)], cwd=SAMPLE_APP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answer():
        try:
            return requests.post(f"http://127.0.0.1:{port}/public/api/v1/demo/add/run", json={"x": 1, "y": 2})
        except requests.ConnectionError:
            return None

    response = wait_until(answer)
    assert response.status_code == 200 and response.json()["response"] == 3
    bad = requests.post(f"http://127.0.0.1:{port}/public/api/v1/311/predict/run", json={"complaint_type": "x"})
    assert bad.status_code == 400 and bad.json()["errorType"] == "BadRequest"
