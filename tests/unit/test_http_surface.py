"""The emulator's HTTP surface (DESIGN.md section 2) in process: routes, statuses, headers and error bodies.

:class:`EmulatorApp` serves a small host over fake pipelines through Werkzeug's test client: no processes,
no sockets. What needs a real server or real pipelines (a socket cut short, chunked uploads, context
injection) stays in tests/integration/test_http_surface.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client, TestResponse

from lambdapool._errors import FunctionError
from lambdapool._invocation import ParameterSpec
from lambdapool._limits import SYNC_PAYLOAD_LIMIT_BYTES
from lambdapool._model import EndpointSpec, Pool, ServiceSpec
from lambdapool._tasks import MemoryTaskStore, TaskRecord, TaskState
from lambdapool._triggers import ScheduleTrigger
from lambdapool.emulator.http._app import EmulatorApp
from lambdapool.emulator.pool._runtime import EndpointRuntime
from lambdapool.emulator.project._catalog import Catalog
from lambdapool.emulator.work._delivery import Deliveries
from lambdapool.emulator.work._tasks import TaskRunner

from .fakes import FakeLauncher, FakePipeline, Gate, ManualClock, fake_runtime

WAIT_S = 10.0
#: Each echo pipeline takes this long (on the surface's manual clock) to start, and each echo call this long.
ECHO_INIT_S = 0.25
ECHO_CALL_S = 0.125
LIMIT = SYNC_PAYLOAD_LIMIT_BYTES  # 6 MiB, Lambda's synchronous payload limit
TASK_ID = re.compile(r"[0-9a-f]{32}")
UNKNOWN_TASK = "0123456789abcdef0123456789abcdef"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

SCHEDULE = ScheduleTrigger.parse("rate(1 hour)")
EVENT = ParameterSpec(required=("event",))

# What tests/integration/apps/behaviours/app.py declares (the endpoints these tests use), plus pools shaped
# for throttling: ``solo`` has one pipeline and no queue, ``impatient`` one pipeline and a queue nobody may
# wait in (timeout_ms=0), and a scheduled endpoint in each service.
B = ServiceSpec(
    "b",
    endpoints=(
        EndpointSpec("b", "echo", parameters=ParameterSpec(optional=("x",), var_keyword=True, wants_context=True)),
        EndpointSpec("b", "pair", outputs=("a", "b"), parameters=ParameterSpec(optional=("n",))),
        EndpointSpec(
            "b",
            "gated",
            pool=Pool(floor=1, ceil=2, cruise=1, queue=2, timeout_ms=30_000),
            parameters=ParameterSpec(required=("tag", "gate", "log")),
        ),
        EndpointSpec(
            "b", "fail", pool=Pool(floor=1, ceil=1, cruise=1, queue=4), parameters=ParameterSpec(optional=("message",))
        ),
        EndpointSpec(
            "b", "solo", pool=Pool(floor=0, ceil=1, cruise=0, queue=0), parameters=ParameterSpec(optional=("n",))
        ),
        EndpointSpec(
            "b",
            "impatient",
            pool=Pool(floor=0, ceil=1, cruise=0, queue=1, timeout_ms=0),
            parameters=ParameterSpec(optional=("n",)),
        ),
        EndpointSpec("b", "tick", parameters=EVENT, trigger=SCHEDULE),
    ),
)
SECURED = ServiceSpec(
    "secured",
    api_keys=("s3cr3t-key", "other-key"),
    endpoints=(
        EndpointSpec("secured", "hello", parameters=ParameterSpec(optional=("name",))),
        EndpointSpec("secured", "nightly", parameters=EVENT, trigger=SCHEDULE),
    ),
)


def traceback_of(message: str) -> str:
    """The traceback a pipeline reports for ``fail`` raising ``ValueError(message)``."""
    return (
        'Traceback (most recent call last):\n  File "app.py", line 68, in fail\n'
        f"    raise ValueError(message)\nValueError: {message}"
    )


def basic(key: str) -> str:
    """An ``Authorization`` header carrying ``key`` as HTTP Basic user name, with an empty password."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class WatchedTaskStore(MemoryTaskStore):
    """A task store whose changes a test can wait for (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()
        self._latest: dict[str, TaskRecord] = {}

    def put(self, record: TaskRecord) -> None:
        super().put(record)
        with self._changed:
            self._latest[record.task_id] = record
            self._changed.notify_all()

    def wait_for(self, task_id: str, status: TaskState) -> TaskRecord:
        with self._changed:
            reached = self._changed.wait_for(
                lambda: task_id in self._latest and self._latest[task_id].status is status, WAIT_S
            )
            assert reached, f"task {task_id} never reached {status}: {self._latest.get(task_id)}"
            return self._latest[task_id]


@dataclasses.dataclass
class FakeHost:
    """The :class:`~lambdapool.emulator.http._app.Host` the surface serves, without an emulator around it."""

    catalog: Catalog
    tasks: TaskRunner
    deliveries: Deliveries
    max_body_bytes: int = LIMIT
    gateway_timeout_s: float = 29.0

    def aws_address(self) -> dict[str, Any]:
        return {"endpointUrl": "http://127.0.0.1:5000", "mode": "moto"}

    def status(self) -> dict[str, Any]:
        return {"app": "behaviours", "services": self.catalog.status()}


class Surface:
    """An :class:`EmulatorApp` over fake pipelines, with what tests hold it by.

    Pools are not loaded: an endpoint's first call starts its first pipeline (a cold start). ``gated``,
    ``solo`` and ``impatient`` calls record their arguments in ``received`` and wait at ``gate``. Runtimes
    run on ``clock``, which only echo pipelines move (see :data:`ECHO_INIT_S`), so echo timings are exact.
    """

    def __init__(self) -> None:
        self.gate = Gate()
        self.clock = ManualClock()
        self.received: list[dict[str, Any]] = []
        self.launchers: dict[str, FakeLauncher] = {}
        self.store = WatchedTaskStore()
        self.deliveries = Deliveries()
        self.catalog = Catalog((B, SECURED), self._runtime_for, deployed_name=lambda name: f"behaviours-dev-{name}")
        self.host = FakeHost(self.catalog, TaskRunner(self.store, self.deliveries), self.deliveries)
        self.app = EmulatorApp(self.host)
        self.client = Client(self.app)

    def close(self) -> None:
        """As the emulator stops: no new work, end the calls in flight, join every thread."""
        self.deliveries.close()
        self.catalog.close()
        self.deliveries.join()

    # -- requests ---------------------------------------------------------------------------------------

    def run(self, service: str, endpoint: str, body: Any = None, **kwargs: Any) -> TestResponse:
        return self.post(f"/public/api/v1/{service}/{endpoint}/run", body, **kwargs)

    def submit(self, service: str, endpoint: str, body: Any = None, **kwargs: Any) -> TestResponse:
        return self.post(f"/public/api/v1/{service}/{endpoint}/submit", body, **kwargs)

    def invoke(self, name: str, payload: bytes = b"{}", **headers: str) -> TestResponse:
        return Client(self.app).post(f"/2015-03-31/functions/{name}/invocations", data=payload, headers=headers)

    def endpoint_status(self, service: str, endpoint: str) -> dict[str, Any]:
        return self.client.get("/__lambdapool__/status").get_json()["services"][service]["endpoints"][endpoint]

    def runtime(self, service: str, endpoint: str) -> EndpointRuntime:
        return self.catalog.services[service].endpoints[endpoint]

    @contextlib.contextmanager
    def held(self, send: Any, *args: Any, **kwargs: Any) -> Iterator[Future[TestResponse]]:
        """Send a request (``send(*args, **kwargs)``) from another thread and hold its call at ``gate`` while
        the block runs; the gate opens when the block ends. Yields the request's future answer."""
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(send, *args, **kwargs)
            try:
                assert self.gate.reached.wait(WAIT_S), "the held call never reached its pipeline"
                yield answer
            finally:
                self.gate.open()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        if body is not None:
            kwargs["json"] = body
        return Client(self.app).post(path, **kwargs)  # a client per request: some tests send from threads

    # -- the fake endpoints -----------------------------------------------------------------------------

    def _runtime_for(self, spec: EndpointSpec) -> EndpointRuntime:
        handlers = {
            "echo": self._echo,
            "fail": self._fail,
            "gated": self._gated,
            "solo": self._gated,
            "impatient": self._gated,
            "hello": lambda arguments, _: f"hello {arguments.get('name', 'world')}",
        }
        handler = handlers.get(spec.endpoint_id, lambda arguments, _: arguments)

        def make(label: str) -> FakePipeline:
            if spec.endpoint_id == "echo":
                self.clock.advance(ECHO_INIT_S)
            return FakePipeline(label, handler)

        launcher = self.launchers[spec.lambda_name] = FakeLauncher(make)
        return fake_runtime(spec, launcher, clock=self.clock)

    def _echo(self, arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        self.clock.advance(ECHO_CALL_S)
        return arguments

    def _gated(self, arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        self.received.append(arguments)
        self.gate.wait(pipeline)
        return {"released": arguments}

    @staticmethod
    def _fail(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        message = arguments.get("message", "boom")
        raise FunctionError("ValueError", message, traceback_of(message))


@pytest.fixture
def surface() -> Iterator[Surface]:
    served = Surface()
    try:
        yield served
    finally:
        served.close()


def error_body(answer: TestResponse, status: int) -> dict[str, str]:
    """The error envelope of ``answer``, checked to be JSON with exactly the envelope's keys."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.get_json()
    assert set(body) == {"errorType", "message", "detailedMessage"}
    return body


def lambda_error(answer: TestResponse, status: int, error_type: str) -> dict[str, str]:
    """The body of an error of the Lambda service itself, as botocore reads it (type in a header)."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["x-amzn-ErrorType"] == error_type
    assert "X-Amz-Function-Error" not in answer.headers
    return answer.get_json()


# -- request bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["run", "submit"])
def test_malformed_json_is_a_bad_request(surface: Surface, route: str) -> None:
    body = b'{"x": 1,'
    with pytest.raises(json.JSONDecodeError) as parse_error:
        json.loads(body)
    answer = surface.post(f"/public/api/v1/b/echo/{route}", data=body)
    message = f"request body is not valid JSON: {parse_error.value}"
    assert error_body(answer, 400) == {"errorType": "BadRequest", "message": message, "detailedMessage": message}
    assert surface.launchers["b-echo"].launched == []
    assert list(surface.store.records()) == []


@pytest.mark.parametrize(
    ("body", "json_type"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"3", "int"), (b"null", "NoneType")]
)
@pytest.mark.parametrize("route", ["run", "submit"])
def test_a_body_that_is_not_an_object_is_a_bad_request(
    surface: Surface, route: str, body: bytes, json_type: str
) -> None:
    answer = surface.post(f"/public/api/v1/b/echo/{route}", data=body)
    assert error_body(answer, 400) == {
        "errorType": "BadRequest",
        "message": f"request body must be a JSON object of parameters, got a JSON {json_type}",
        "detailedMessage": "request body must be a JSON object whose attributes are the function's parameters, "
        'e.g. {"x": 1}',
    }
    assert surface.launchers["b-echo"].launched == []
    assert list(surface.store.records()) == []


def test_a_body_that_is_not_utf8_is_a_bad_request(surface: Surface) -> None:
    body = b'{"x": "\xff"}'
    with pytest.raises(UnicodeDecodeError) as decode_error:
        body.decode("utf-8-sig")
    assert error_body(surface.run("b", "echo", data=body), 400) == {
        "errorType": "BadRequest",
        "message": "request body is not valid UTF-8",
        "detailedMessage": str(decode_error.value),
    }


def test_a_utf8_byte_order_mark_is_accepted(surface: Surface) -> None:
    answer = surface.run("b", "echo", data=b'\xef\xbb\xbf{"x": 5}')
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {"x": 5}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
)
def test_the_body_is_json_whatever_the_content_type(surface: Surface, content_type: str) -> None:
    answer = surface.run("b", "echo", data=b'{"x": 5}', headers={"Content-Type": content_type})
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {"x": 5}


@pytest.mark.parametrize("body", [b"", b" \r\n\t"])
def test_an_empty_or_blank_body_is_an_empty_object(surface: Surface, body: bytes) -> None:
    answer = surface.run("b", "echo", data=body)
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {}


def test_no_body_no_content_length_and_no_content_type_is_an_empty_object(surface: Surface) -> None:
    # What the Dataiku client may send: a bare POST, its input not terminated (not chunked).
    answer = surface.run("b", "echo", environ_overrides={"CONTENT_LENGTH": None, "CONTENT_TYPE": None})
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {}


def test_a_body_shorter_than_its_content_length_is_a_bad_request(surface: Surface) -> None:
    answer = surface.run("b", "echo", input_stream=io.BytesIO(b"{}"), environ_overrides={"CONTENT_LENGTH": "100"})
    assert error_body(answer, 400) == {
        "errorType": "BadRequest",
        "message": "the request body ended early",
        "detailedMessage": "the client sent fewer bytes than its Content-Length (100) announced",
    }
    assert surface.launchers["b-echo"].launched == []


def test_a_body_over_6_mb_is_payload_too_large(surface: Surface) -> None:
    big = json.dumps({"x": "a" * LIMIT}).encode()
    assert error_body(surface.run("b", "echo", data=big), 413) == {
        "errorType": "PayloadTooLarge",
        "message": f"request body ({len(big)} bytes) is over the {6 * 2**20}-byte limit",
        "detailedMessage": f"request bodies are limited to {6 * 2**20} bytes, Lambda's synchronous payload limit; "
        "pass large data through S3 and send its key instead",
    }
    assert error_body(surface.submit("b", "echo", data=big), 413)["errorType"] == "PayloadTooLarge"
    assert surface.launchers["b-echo"].launched == []
    assert list(surface.store.records()) == []
    accepted = surface.run("b", "echo", {"x": "a" * 2**20})
    assert accepted.status_code == 200
    assert accepted.get_json()["response"] == {"x": "a" * 2**20}


def test_a_body_without_content_length_is_cut_at_the_limit(surface: Surface) -> None:
    # A chunked upload reaches the app as a terminated input without a Content-Length.
    big = json.dumps({"x": "a" * LIMIT}).encode()
    answer = surface.run(
        "b",
        "echo",
        input_stream=io.BytesIO(big),
        environ_overrides={"CONTENT_LENGTH": None, "wsgi.input_terminated": True},
    )
    body = error_body(answer, 413)
    assert (body["errorType"], body["message"]) == ("PayloadTooLarge", f"request body is over the {LIMIT}-byte limit")
    small = surface.run(
        "b",
        "echo",
        input_stream=io.BytesIO(b'{"x": 7}'),
        environ_overrides={"CONTENT_LENGTH": None, "wsgi.input_terminated": True},
    )
    assert small.status_code == 200
    assert small.get_json()["response"] == {"x": 7}


# -- parameters -------------------------------------------------------------------------------------------


def test_a_missing_parameter_is_a_bad_request_naming_the_expected_ones(surface: Surface) -> None:
    assert error_body(surface.run("b", "gated", {"tag": "t"}), 400) == {
        "errorType": "BadRequest",
        "message": "missing required parameter(s): gate, log",
        "detailedMessage": "missing required parameter(s): gate, log. Expected parameters: tag, gate, log",
    }
    assert surface.launchers["b-gated"].launched == []


def test_an_unexpected_parameter_is_a_bad_request(surface: Surface) -> None:
    assert error_body(surface.run("b", "pair", {"n": 2, "m": 3}), 400) == {
        "errorType": "BadRequest",
        "message": "unexpected parameter(s): m",
        "detailedMessage": "unexpected parameter(s): m. Expected parameters: n (optional)",
    }


def test_submit_checks_parameters_before_accepting_a_task(surface: Surface) -> None:
    body = error_body(surface.submit("b", "pair", {"m": 3}), 400)
    assert body["message"] == "unexpected parameter(s): m"
    assert list(surface.store.records()) == []


def test_the_task_envelope_cannot_be_sent_in_a_body_even_to_kwargs(surface: Surface) -> None:
    envelope = {"__lambdapool_task__": {"taskId": "0" * 32, "bucket": "theirs", "token": "x"}, "arguments": {}}
    for path in ("/public/api/v1/b/echo/run", "/public/api/v1/b/echo/submit"):
        answer = surface.client.post(path, json=envelope)
        assert error_body(answer, 400)["message"] == "reserved parameter(s) cannot be sent: __lambdapool_task__"
    assert surface.launchers["b-echo"].launched == []


def test_context_cannot_be_sent_in_the_body(surface: Surface) -> None:
    assert error_body(surface.run("b", "echo", {"context": "forged"}), 400) == {
        "errorType": "BadRequest",
        "message": "reserved parameter(s) cannot be sent: context",
        "detailedMessage": "reserved parameter(s) cannot be sent: context. Expected parameters: x (optional), "
        "any other attribute (**kwargs)",
    }


def test_kwargs_take_any_attribute_and_the_pipeline_gets_them_as_sent(surface: Surface) -> None:
    sent = {"x": 1, "y": [2], "z": {"k": "v"}}
    answer = surface.run("b", "echo", sent)
    assert answer.status_code == 200
    assert answer.get_json()["response"] == sent


# -- routes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "endpoint", "message", "detailed"),
    [
        ("nope", "echo", "unknown service 'nope'", "services: b, secured"),
        ("b", "nope", "unknown endpoint b/nope", "endpoints of b: echo, pair, gated, fail, solo, impatient, tick"),
        # A trigger endpoint is fired, not called.
        ("b", "tick", "unknown endpoint b/tick", "endpoints of b: echo, pair, gated, fail, solo, impatient, tick"),
    ],
)
@pytest.mark.parametrize("route", ["run", "submit"])
def test_unknown_service_or_endpoint_is_not_found(
    surface: Surface, route: str, service: str, endpoint: str, message: str, detailed: str
) -> None:
    answer = surface.post(f"/public/api/v1/{service}/{endpoint}/{route}", {})
    assert error_body(answer, 404) == {"errorType": "NotFound", "message": message, "detailedMessage": detailed}


@pytest.mark.parametrize("path", ["/no/such/route", "/public/api/v1/b/echo/run/more", "/public/api/v1/tasks/a.b"])
def test_an_unknown_route_is_not_found(surface: Surface, path: str) -> None:
    message = f"no route GET {path}"
    answer = surface.client.get(path)
    assert error_body(answer, 404) == {"errorType": "NotFound", "message": message, "detailedMessage": message}


def test_a_trailing_slash_reaches_the_same_route(surface: Surface) -> None:
    answer = surface.client.post("/public/api/v1/b/echo/run/", json={"x": 3})
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {"x": 3}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/public/api/v1/b/echo/run", "POST"),
        ("PUT", "/public/api/v1/b/echo/submit", "POST"),
        ("POST", f"/public/api/v1/tasks/{UNKNOWN_TASK}", "DELETE, GET"),
        ("PUT", "/public/api/v1/tasks", "DELETE, GET"),
        ("GET", "/2015-03-31/functions/b-echo/invocations", "POST"),
        ("POST", "/__lambdapool__/status", "GET"),
        ("GET", "/__lambdapool__/schedules/b/tick/fire", "POST"),
        ("POST", "/__lambdapool__/aws", "GET"),
        ("POST", "/metrics", "GET"),
    ],
)
def test_the_wrong_method_is_a_405_envelope_with_an_allow_header(
    surface: Surface, method: str, path: str, allowed: str
) -> None:
    answer = surface.client.open(path, method=method)
    assert error_body(answer, 405) == {
        "errorType": "MethodNotAllowed",
        "message": f"{method} is not allowed on {path}",
        "detailedMessage": f"allowed methods: {allowed}",
    }
    assert answer.headers["Allow"] == allowed


def test_an_unexpected_failure_is_a_500_envelope(
    surface: Surface, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("status is broken")

    monkeypatch.setattr(surface.host, "status", broken)
    with caplog.at_level(logging.ERROR, logger="lambdapool.http"):
        answer = surface.client.get("/__lambdapool__/status")
    assert error_body(answer, 500) == {
        "errorType": "InternalError",
        "message": "the emulator failed",
        "detailedMessage": "see its log",
    }
    assert [record.getMessage() for record in caplog.records] == ["internal error answering GET /__lambdapool__/status"]
    assert surface.run("b", "echo", {}).status_code == 200


# -- API keys ---------------------------------------------------------------------------------------------

UNAUTHORIZED = {
    "errorType": "Unauthorized",
    "message": "service 'secured' requires an API key",
    "detailedMessage": "send the key as HTTP Basic user name (empty password) or as 'Authorization: Bearer <key>'",
}


@pytest.mark.parametrize(
    "authorization", [None, basic("wrong-key"), "Bearer wrong-key", "Bearer ", "Basic !!notbase64", "Digest abc"]
)
def test_a_missing_or_wrong_api_key_is_unauthorized(surface: Surface, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    assert error_body(surface.run("secured", "hello", {}, headers=headers), 401) == UNAUTHORIZED
    assert error_body(surface.submit("secured", "hello", {}, headers=headers), 401) == UNAUTHORIZED
    # An unknown endpoint of a secured service does not reveal itself without a key.
    assert error_body(surface.run("secured", "nope", {}, headers=headers), 401) == UNAUTHORIZED
    assert surface.launchers["secured-hello"].launched == []
    assert list(surface.store.records()) == []


def test_a_valid_api_key_is_accepted_as_basic_user_or_bearer_token(surface: Surface) -> None:
    named = surface.run("secured", "hello", {"name": "ada"}, headers={"Authorization": basic("s3cr3t-key")})
    assert named.status_code == 200
    assert named.get_json()["response"] == "hello ada"
    unnamed = surface.run("secured", "hello", {}, headers={"Authorization": "Bearer other-key"})
    assert unnamed.status_code == 200
    assert unnamed.get_json()["response"] == "hello world"


def test_a_task_of_a_secured_service_is_guarded_by_its_keys(surface: Surface) -> None:
    key = {"Authorization": "Bearer s3cr3t-key"}
    task_id = surface.submit("secured", "hello", {"name": "ada"}, headers=key).get_json()["taskId"]
    surface.store.wait_for(task_id, TaskState.DONE)
    path = f"/public/api/v1/tasks/{task_id}"
    assert error_body(surface.client.get(path), 401) == UNAUTHORIZED
    assert error_body(surface.client.delete(path), 401) == UNAUTHORIZED
    assert surface.client.get(path, headers=key).get_json()["response"] == "hello ada"
    # Listed only with a key; filtering on the service without one is refused.
    assert surface.client.get("/public/api/v1/tasks").get_json() == {"tasks": [], "nextToken": None}
    listed = surface.client.get("/public/api/v1/tasks", headers=key).get_json()["tasks"]
    assert [task["taskId"] for task in listed] == [task_id]
    assert error_body(surface.client.get("/public/api/v1/tasks?serviceId=secured"), 401) == UNAUTHORIZED


def test_firing_a_schedule_of_a_secured_service_needs_a_key(surface: Surface) -> None:
    assert error_body(surface.client.post("/__lambdapool__/schedules/secured/nightly/fire"), 401) == UNAUTHORIZED
    assert error_body(surface.client.post("/__lambdapool__/schedules/secured/nope/fire"), 401) == UNAUTHORIZED
    assert surface.launchers["secured-nightly"].launched == []
    fired = surface.client.post(
        "/__lambdapool__/schedules/secured/nightly/fire", headers={"Authorization": basic("s3cr3t-key")}
    )
    assert fired.status_code == 200


SIGV4 = "AWS4-HMAC-SHA256 Credential={}/20261122/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0"


@pytest.mark.parametrize(
    "authorization", [None, basic("wrong"), "Bearer wrong", SIGV4.format("AKIAWRONG"), "AWS4-HMAC-SHA256 nonsense"]
)
def test_invoking_a_function_of_a_secured_service_needs_a_key(surface: Surface, authorization: str | None) -> None:
    # As Lambda answers a request signed with an unknown access key id: 403 UnrecognizedClientException.
    answer = surface.invoke("secured-hello", b"{}", **({"Authorization": authorization} if authorization else {}))
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert answer.get_json()["message"] == "The security token included in the request is invalid."
    assert surface.launchers["secured-hello"].launched == []


@pytest.mark.parametrize("authorization", [basic("s3cr3t-key"), "Bearer other-key", SIGV4.format("s3cr3t-key")])
def test_the_invoke_api_takes_the_key_as_basic_bearer_or_sigv4_access_key_id(
    surface: Surface, authorization: str
) -> None:
    answer = surface.invoke("secured-hello", b'{"name": "ada"}', Authorization=authorization)
    assert answer.status_code == 200 and answer.get_json() == "hello ada"


# -- the run envelope and the pools' answers -----------------------------------------------------------------


def test_the_envelope_carries_timing_and_api_context(surface: Surface) -> None:
    cold = surface.run("b", "echo", {"x": "y"})
    assert cold.status_code == 200
    assert cold.headers["Content-Type"] == "application/json"
    assert cold.get_json() == {
        "response": {"x": "y"},
        "timing": {"wait": 0.0, "coldStart": 250.0, "execution": 0.5, "total": 375.0},
        "apiContext": {"serviceId": "b", "endpointId": "echo", "pipelineId": "b-echo-1", "coldStart": True},
    }
    warm = surface.run("b", "echo", {"x": "z"})
    assert warm.get_json() == {
        "response": {"x": "z"},
        "timing": {"wait": 0.0, "coldStart": 0.0, "execution": 0.5, "total": 125.0},
        "apiContext": {"serviceId": "b", "endpointId": "echo", "pipelineId": "b-echo-1", "coldStart": False},
    }


def test_a_function_error_is_a_500_with_its_class_name_and_traceback(surface: Surface) -> None:
    assert error_body(surface.run("b", "fail", {"message": "nope"}), 500) == {
        "errorType": "ValueError",
        "message": "nope",
        "detailedMessage": traceback_of("nope"),
    }
    assert surface.run("b", "echo", {}).status_code == 200


def test_queue_rejects_when_full_with_retry_after(surface: Surface) -> None:
    with surface.held(surface.run, "b", "solo", {"n": 1}) as first:
        rejected = surface.run("b", "solo", {"n": 2})
        assert error_body(rejected, 429) == {
            "errorType": "QueueFull",
            "message": "b/solo: all 1 pipelines are busy and 0 requests already wait",
            "detailedMessage": "the queue is full (ceil=1, queue=0); retry after 1 s",
        }
        assert rejected.headers["Retry-After"] == "1"
    assert first.result(WAIT_S).get_json()["response"] == {"released": {"n": 1}}
    assert surface.received == [{"n": 1}]
    assert surface.endpoint_status("b", "solo")["counters"]["queueFull"] == 1


def test_a_request_that_waits_past_timeout_ms_is_rejected_with_retry_after(surface: Surface) -> None:
    with surface.held(surface.run, "b", "impatient", {"n": 1}) as first:
        rejected = surface.run("b", "impatient", {"n": 2})
        assert error_body(rejected, 429) == {
            "errorType": "QueueTimeout",
            "message": "b/impatient: no pipeline became free within timeout_ms=0",
            "detailedMessage": "the request waited 0 ms for one of the endpoint's ceil pipelines (on Lambda, its "
            "reserved concurrency); raise ceil or timeout_ms, or retry after 1 s",
        }
        assert rejected.headers["Retry-After"] == "1"
    assert first.result(WAIT_S).status_code == 200
    assert surface.received == [{"n": 1}]
    assert surface.endpoint_status("b", "impatient")["counters"]["queueTimeout"] == 1


# -- tasks ------------------------------------------------------------------------------------------------


def test_submit_answers_202_with_a_task_id_and_the_task_runs_to_done(surface: Surface) -> None:
    answer = surface.submit("b", "echo", {"x": 1})
    assert answer.status_code == 202
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.get_json()
    assert list(body) == ["taskId"]
    assert TASK_ID.fullmatch(body["taskId"])
    surface.store.wait_for(body["taskId"], TaskState.DONE)
    task = surface.client.get(f"/public/api/v1/tasks/{body['taskId']}").get_json()
    for stamp in ("submittedAt", "startedAt", "finishedAt"):
        assert TIMESTAMP.fullmatch(task.pop(stamp))
    assert task == {
        "taskId": body["taskId"],
        "serviceId": "b",
        "endpointId": "echo",
        "status": "DONE",
        "response": {"x": 1},
    }


def test_a_failed_task_keeps_its_error(surface: Surface) -> None:
    task_id = surface.submit("b", "fail", {"message": "nope"}).get_json()["taskId"]
    surface.store.wait_for(task_id, TaskState.FAILED)
    task = surface.client.get(f"/public/api/v1/tasks/{task_id}").get_json()
    assert task["status"] == "FAILED"
    assert "response" not in task
    assert task["error"] == {"errorType": "ValueError", "message": "nope", "detailedMessage": traceback_of("nope")}


def test_deleting_a_running_task_cancels_it(surface: Surface) -> None:
    task_id = surface.submit("b", "gated", {"tag": "t", "gate": "g", "log": "l"}).get_json()["taskId"]
    assert surface.gate.reached.wait(WAIT_S)
    answer = surface.client.delete(f"/public/api/v1/tasks/{task_id}")
    assert answer.status_code == 200
    task = answer.get_json()
    assert task["status"] == "CANCELLED"
    message = "the call was cancelled while running; pipeline b-gated-1 was killed and is replaced"
    assert task["error"] == {"errorType": "Cancelled", "message": message, "detailedMessage": message}
    assert surface.client.get(f"/public/api/v1/tasks/{task_id}").get_json() == task


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_an_unknown_task_is_not_found(surface: Surface, method: str) -> None:
    answer = surface.client.open(f"/public/api/v1/tasks/{UNKNOWN_TASK}", method=method)
    message = f"unknown task '{UNKNOWN_TASK}'"
    assert error_body(answer, 404) == {"errorType": "NotFound", "message": message, "detailedMessage": message}


def test_tasks_are_listed_oldest_first_and_filtered(surface: Surface) -> None:
    echo = surface.submit("b", "echo", {"x": 1}).get_json()["taskId"]
    surface.store.wait_for(echo, TaskState.DONE)
    failed = surface.submit("b", "fail", {}).get_json()["taskId"]
    surface.store.wait_for(failed, TaskState.FAILED)

    def listed(query: str) -> list[str]:
        answer = surface.client.get(f"/public/api/v1/tasks{query}")
        assert answer.status_code == 200
        return [task["taskId"] for task in answer.get_json()["tasks"]]

    assert listed("") == [echo, failed]
    assert listed("?serviceId=b&endpointId=fail") == [failed]
    assert listed("?status=DONE") == [echo]
    assert listed("?serviceId=b&status=CANCELLED") == []
    message = "unknown service 'nope'"
    assert error_body(surface.client.get("/public/api/v1/tasks?serviceId=nope"), 404)["message"] == message


def test_the_task_list_is_paged_with_summaries(surface: Surface) -> None:
    submitted = []
    for number in range(5):
        task_id = surface.submit("b", "echo", {"x": number}).get_json()["taskId"]
        surface.store.wait_for(task_id, TaskState.DONE)
        submitted.append(task_id)
    pages, token = [], ""
    while True:
        answer = surface.client.get(f"/public/api/v1/tasks?limit=2{'&nextToken=' + token if token else ''}").get_json()
        pages.append([task["taskId"] for task in answer["tasks"]])
        assert all("response" not in task and task["status"] == "DONE" for task in answer["tasks"])
        token = answer["nextToken"]
        if token is None:
            break
    everything = [task["taskId"] for task in surface.client.get("/public/api/v1/tasks?limit=1000").get_json()["tasks"]]
    assert sorted(everything) == sorted(submitted)  # oldest first, to the millisecond (then by id)
    assert pages == [everything[0:2], everything[2:4], everything[4:5]]
    assert surface.client.get(f"/public/api/v1/tasks/{submitted[0]}").get_json()["response"]["x"] == 0
    for limit in ("0", "1001", "x", "-1"):
        assert error_body(surface.client.get(f"/public/api/v1/tasks?limit={limit}"), 400)["errorType"] == "BadRequest"


# -- the Lambda Invoke API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "b-echo",
        "behaviours-dev-b-echo",
        "arn:aws:lambda:us-east-1:123456789012:function:behaviours-dev-b-echo",
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ab-echo",
        "b-echo:$LATEST",
        "arn:aws:lambda:us-east-1:123456789012:function:b-echo:$LATEST",
    ],
)
def test_invoke_returns_the_result_under_every_name_of_the_function(surface: Surface, name: str) -> None:
    answer = surface.invoke(name, b'{"x": 41, "y": 1}')
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert "X-Amz-Function-Error" not in answer.headers
    assert answer.get_json() == {"x": 41, "y": 1}


def test_invoke_with_log_type_tail_returns_start_end_and_report_with_init_duration_on_a_cold_start(
    surface: Surface,
) -> None:
    cold = surface.invoke("b-echo", b"{}", **{"X-Amz-Log-Type": "Tail"})
    warm = surface.invoke("b-echo", b"{}", **{"X-Amz-Log-Type": "Tail"})
    tail = (
        r"START RequestId: (?P<id>[0-9a-f-]{36}) Version: \$LATEST\nEND RequestId: (?P=id)\n"
        r"REPORT RequestId: (?P=id)\tDuration: 0\.50 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\t"
        r"Max Memory Used: 1 MB\t"
    )
    assert re.fullmatch(
        tail + r"Init Duration: 250\.00 ms\t\n", base64.b64decode(cold.headers["X-Amz-Log-Result"]).decode()
    )
    assert re.fullmatch(tail + r"\n", base64.b64decode(warm.headers["X-Amz-Log-Result"]).decode())
    assert "X-Amz-Log-Result" not in surface.invoke("b-echo", b"{}").headers


def test_invoke_of_an_unknown_function_is_resource_not_found(surface: Surface) -> None:
    body = lambda_error(surface.invoke("b-nope"), 404, "ResourceNotFoundException")
    assert body == {"Type": "User", "message": "Function not found: b-nope"}


def test_invoke_with_an_unknown_invocation_type_is_invalid_parameter_value(surface: Surface) -> None:
    answer = surface.invoke("b-echo", **{"X-Amz-Invocation-Type": "Later"})
    body = lambda_error(answer, 400, "InvalidParameterValueException")
    assert body == {"Type": "User", "message": "invalid invocation type Later"}
    assert surface.launchers["b-echo"].launched == []


def test_invoke_hands_a_payload_that_is_not_an_object_to_the_function_which_refuses_it(surface: Surface) -> None:
    # As on Lambda: any JSON is a valid event; the endpoint's handler refuses one that is not an object.
    answer = surface.invoke("b-echo", b"[1, 2]")
    assert answer.status_code == 200 and answer.headers["X-Amz-Function-Error"] == "Unhandled"
    assert answer.get_json()["errorType"] == "BadRequest"
    assert answer.get_json()["errorMessage"] == "the event must be a JSON object of parameters, got a JSON list"
    not_json = lambda_error(surface.invoke("b-echo", b"[1, 2"), 400, "InvalidRequestContentException")
    assert not_json["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("b-echo:live", ""),
        ("b-echo:7", ""),
        ("b-echo", "?Qualifier=live"),
        ("arn:aws:lambda:us-east-1:999999999999:function:b-echo", ""),
    ],
    ids=["unknown-alias", "unknown-version", "qualifier-parameter", "another-account"],
)
def test_invoke_of_an_unknown_version_alias_or_account_is_resource_not_found(
    surface: Surface, name: str, query: str
) -> None:
    answer = Client(surface.app).post(f"/2015-03-31/functions/{name}/invocations{query}", data=b"{}")
    assert answer.status_code == 404 and answer.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert answer.headers["x-amzn-RequestId"]
    assert surface.launchers["b-echo"].launched == [] or all(p.calls == 0 for p in surface.launchers["b-echo"].launched)


def test_a_task_over_1_mb_is_payload_too_large_as_an_asynchronous_invocation_is(surface: Surface) -> None:
    big = json.dumps({"x": "a" * (1 << 20)}).encode()
    body = error_body(surface.client.post("/public/api/v1/b/echo/submit", data=big), 413)
    assert body["errorType"] == "PayloadTooLarge" and str(1 << 20) in body["message"]
    assert "asynchronous payload limit" in body["detailedMessage"]
    assert surface.run("b", "echo", {"x": "a" * (1 << 20)}).status_code == 200  # a synchronous call may


def test_an_event_payload_over_1_mb_is_request_too_large(surface: Surface) -> None:
    big = json.dumps({"x": "a" * (1 << 20)}).encode()
    body = lambda_error(
        surface.invoke("b-echo", big, **{"X-Amz-Invocation-Type": "Event"}), 413, "RequestTooLargeException"
    )
    assert str(1 << 20) in body["message"]
    assert surface.invoke("b-echo", big).status_code == 200  # a synchronous call may carry up to 6 MB


def test_invoke_with_a_payload_over_6_mb_is_request_too_large(surface: Surface) -> None:
    big = json.dumps({"x": "a" * LIMIT}).encode()
    body = lambda_error(surface.invoke("b-echo", big), 413, "RequestTooLargeException")
    assert body == {"Type": "User", "message": f"request body ({len(big)} bytes) is over the {LIMIT}-byte limit"}


def test_invoke_dry_run_answers_204_without_running(surface: Surface) -> None:
    answer = surface.invoke("b-echo", b'{"x": 1}', **{"X-Amz-Invocation-Type": "DryRun"})
    assert answer.status_code == 204
    assert answer.get_data() == b""
    assert answer.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert surface.launchers["b-echo"].launched == []


def test_invoke_of_a_failing_function_is_a_200_with_function_error_unhandled(surface: Surface) -> None:
    answer = surface.invoke("b-fail", b'{"message": "nope"}')
    assert answer.status_code == 200
    assert answer.headers["X-Amz-Function-Error"] == "Unhandled"
    assert answer.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert answer.get_json() == {
        "errorMessage": "nope",
        "errorType": "ValueError",
        "stackTrace": traceback_of("nope").splitlines(),
    }


def test_invoke_with_bad_parameters_is_a_function_error_named_bad_request(surface: Surface) -> None:
    answer = surface.invoke("b-pair", b'{"unknown": 1}')
    assert answer.status_code == 200
    assert answer.headers["X-Amz-Function-Error"] == "Unhandled"
    message = "unexpected parameter(s): unknown"
    assert answer.get_json() == {
        "errorMessage": message,
        "errorType": "BadRequest",
        "stackTrace": [f"{message}. Expected parameters: n (optional)"],
    }
    assert surface.launchers["b-pair"].launched == []


def test_invokes_above_ceil_are_throttled_not_queued(surface: Surface) -> None:
    # impatient has a queue, which the Invoke API does not use: Lambda has none.
    with surface.held(surface.invoke, "b-impatient", b'{"n": 1}') as first:
        throttled = lambda_error(surface.invoke("b-impatient", b'{"n": 2}'), 429, "TooManyRequestsException")
        assert throttled == {
            "Type": "User",
            "message": "Rate Exceeded.",
            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        }
        assert surface.runtime("b", "impatient").occupancy().queued == 0
    assert first.result(WAIT_S).get_json() == {"released": {"n": 1}}
    assert surface.received == [{"n": 1}]


def test_event_invocations_answer_202_and_run(surface: Surface) -> None:
    sent = {"tag": "async", "gate": "g", "log": "l"}
    answer = surface.invoke("b-gated", json.dumps(sent).encode(), **{"X-Amz-Invocation-Type": "Event"})
    assert answer.status_code == 202
    assert answer.get_data() == b""
    assert answer.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert surface.gate.reached.wait(WAIT_S)
    assert surface.received == [sent]
    surface.gate.open()


def test_an_event_invocation_with_bad_parameters_is_accepted_then_logged(
    surface: Surface, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lambdapool.lambda"):
        answer = surface.invoke("b-pair", b'{"unknown": 1}', **{"X-Amz-Invocation-Type": "Event"})
    assert answer.status_code == 202
    assert [record.getMessage() for record in caplog.records] == [
        "asynchronous invocation of b-pair failed: BadRequest: unexpected parameter(s): unknown"
    ]
    assert surface.launchers["b-pair"].launched == []


# -- schedules, status, aws, metrics ----------------------------------------------------------------------------


def test_fire_runs_a_scheduled_endpoint_with_an_eventbridge_event(surface: Surface) -> None:
    answer = surface.client.post("/__lambdapool__/schedules/b/tick/fire")
    assert answer.status_code == 200
    envelope = answer.get_json()
    event = envelope["response"]  # a trigger endpoint gets the raw event
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/behaviours-dev-b-tick-event"]
    assert envelope["apiContext"] == {
        "serviceId": "b",
        "endpointId": "tick",
        "pipelineId": "b-tick-1",
        "coldStart": True,
    }
    assert surface.endpoint_status("b", "tick")["counters"]["eventsDelivered"] == 1


@pytest.mark.parametrize(("service", "endpoint"), [("b", "echo"), ("b", "nope")])
def test_fire_of_an_endpoint_that_is_not_scheduled_is_not_found(surface: Surface, service: str, endpoint: str) -> None:
    message = f"no scheduled endpoint {service}/{endpoint}"
    answer = surface.client.post(f"/__lambdapool__/schedules/{service}/{endpoint}/fire")
    assert error_body(answer, 404) == {"errorType": "NotFound", "message": message, "detailedMessage": message}
    assert surface.launchers["b-echo"].launched == []


def test_fire_of_an_unknown_service_is_not_found_like_run(surface: Surface) -> None:
    answer = surface.client.post("/__lambdapool__/schedules/nope/tick/fire")
    assert error_body(answer, 404) == {
        "errorType": "NotFound",
        "message": "unknown service 'nope'",
        "detailedMessage": "services: b, secured",
    }


def test_status_and_aws_answer_the_hosts_json(surface: Surface) -> None:
    surface.run("b", "echo", {})
    status = surface.client.get("/__lambdapool__/status")
    assert status.status_code == 200
    assert status.headers["Content-Type"] == "application/json"
    assert status.get_json() == surface.host.status()
    echo = status.get_json()["services"]["b"]["endpoints"]["echo"]
    assert (echo["pipelines"]["idle"], echo["counters"]["calls"], echo["counters"]["succeeded"]) == (1, 1, 1)
    assert status.get_json()["services"]["secured"]["authenticated"] is True
    aws = surface.client.get("/__lambdapool__/aws")
    assert aws.status_code == 200
    assert aws.get_json() == {"endpointUrl": "http://127.0.0.1:5000", "mode": "moto"}


def test_metrics_are_prometheus_text_with_the_pool_figures(surface: Surface) -> None:
    surface.run("b", "echo", {})
    surface.run("b", "fail", {})
    answer = surface.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }
    echo, fail = (("endpoint", "echo"), ("service", "b")), (("endpoint", "fail"), ("service", "b"))
    assert samples[("lambdapool_calls_total", echo)] == 1
    assert samples[("lambdapool_calls_succeeded_total", echo)] == 1
    assert samples[("lambdapool_calls_failed_total", echo)] == 0
    assert samples[("lambdapool_calls_total", fail)] == 1
    assert samples[("lambdapool_calls_failed_total", fail)] == 1
    assert samples[("lambdapool_call_duration_seconds_count", echo)] == 1
    assert samples[("lambdapool_call_duration_seconds_sum", echo)] == ECHO_INIT_S + ECHO_CALL_S
    assert samples[("lambdapool_pipelines", (*echo, ("state", "idle")))] == 1
    assert samples[("lambdapool_pipelines", (*echo, ("state", "busy")))] == 0
    assert samples[("lambdapool_queue_depth", echo)] == 0
