"""The Chalice adapter: ``mount(app, *services)`` turns function endpoints into Chalice registrations.

For every endpoint it registers:

- a pure Lambda function ``{service}-{endpoint}`` (``app.lambda_function``) that runs the endpoint, so its
  pool maps onto that function's settings (``ceil`` -> reserved concurrency, ``timeout_s``, ``memory_mb``);
- the route ``POST /public/api/v1/{service}/{endpoint}/run``. Deployed on Lambda, the route forwards the call
  to the endpoint's function with a synchronous ``Invoke`` (a throttled invoke is retried with jittered
  backoff until the pool's ``timeout_ms``, then answered 429 ``QueueTimeout``); under ``chalice local`` and
  ``chalice.test.Client``, where no Lambda exists, it runs the endpoint in process. An endpoint declared
  ``inline=True`` always runs inside the route's handler and gets no function of its own.

Runtime code: it goes into every Lambda package, so it imports only the model and ``chalice.app`` (boto3,
which the Lambda runtime provides, only when a call is forwarded).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Response, S3Event

from ._errors import (
    BadRequest,
    ConfigurationError,
    FunctionError,
    LambdapoolError,
    NotFound,
    OutOfMemory,
    PayloadTooLarge,
    PipelineCrashed,
    QueueTimeout,
    Timeout,
    Unauthorized,
    error_from_body,
)
from ._model import (
    TASK_FINAL_STATES,
    TASK_KEY,
    Endpoint,
    InvocationContext,
    Service,
    call_endpoint,
    call_trigger,
    is_authorized,
    mounted_services,
    parse_body,
    record_mount,
    utc_timestamp,
)

__all__ = ["LAMBDA_NAME_LIMIT", "check_deployed_name", "handler_name", "mount", "run_path", "trigger_event"]

MAX_BODY_BYTES = 6 * 2**20
#: AWS Lambda's limit on a function name.
LAMBDA_NAME_LIMIT = 64
# Chalice requires one binary-ness per route: these are the textual types a JSON body arrives with.
_ANY_CONTENT = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
_INIT_DURATION = re.compile(r"Init Duration: ([0-9.]+) ms")


def run_path(service_id: str, endpoint_id: str) -> str:
    """The run route of an endpoint: ``/public/api/v1/{service}/{endpoint}/run``."""
    return f"/public/api/v1/{service_id}/{endpoint_id}/run"


def handler_name(endpoint: Endpoint) -> str:
    """The module attribute (and ``__name__``) of an endpoint's Lambda handler in ``app.py``."""
    return "lambdapool_" + f"{endpoint.service_id}__{endpoint.endpoint_id}".replace("-", "_h_")


def mount(app: Chalice, *services: Service, stage: str = "dev") -> None:
    """Register every endpoint of ``services`` on ``app`` (see the module docstring).

    Call it from ``app.py``: the generated handlers become attributes of the calling module, which is how
    Chalice's deployer resolves them (``app.<handler>``). Raises ``ValueError`` if a deployed function name
    (``{app}-{stage}-{service}-{endpoint}``, checked for ``stage``) would exceed Lambda's 64 characters, or
    if a handler name is already taken in the module.
    """
    record_mount(app, services)
    namespace = sys._getframe(1).f_globals
    for service in services:
        for endpoint in service.endpoints.values():
            _check_name_length(app, endpoint, stage)
            if endpoint.trigger is not None:
                _register_trigger(app, endpoint, namespace)
                continue
            if not endpoint.inline:
                _register_function(app, endpoint, namespace)
            _register_run_route(app, service, endpoint, namespace)
            _register_submit_route(app, service, endpoint, namespace)
    if _TASK_VIEW not in namespace:
        _register_task_route(app, namespace)


def _bind(namespace: dict[str, Any], name: str, handler: Callable[..., Any]) -> None:
    if name in namespace:
        raise ValueError(f"mount(): app.py already defines {name!r}; lambdapool needs that name for a handler")
    namespace[name] = handler


def check_deployed_name(app_name: str, stage: str, lambda_name: str) -> None:
    """Raise ``ValueError`` if ``{app}-{stage}-{lambda_name}`` would exceed Lambda's 64 characters."""
    deployed = f"{app_name}-{stage}-{lambda_name}"
    if len(deployed) > LAMBDA_NAME_LIMIT:
        raise ValueError(
            f"{lambda_name} would deploy as {deployed!r}, {len(deployed)} characters; Lambda allows "
            f"{LAMBDA_NAME_LIMIT}: shorten the app, service or endpoint id"
        )


def _check_name_length(app: Chalice, endpoint: Endpoint, stage: str) -> None:
    if not endpoint.inline:
        check_deployed_name(app.app_name, stage, endpoint.lambda_name)


def trigger_event(endpoint: Endpoint, raw_event: dict[str, Any], context: Any = None) -> Any:
    """The Chalice event object a trigger endpoint receives for a raw Lambda event: a ``CloudWatchEvent``
    for a schedule, an ``S3Event`` for an S3 trigger (the same classes Chalice hands its own handlers)."""
    assert endpoint.trigger is not None
    if endpoint.trigger.kind == "schedule":
        return CloudWatchEvent(raw_event, context)
    return S3Event(raw_event, context)


def _lambda_invocation(endpoint: Endpoint, state: dict[str, bool], lambda_context: Any) -> InvocationContext:
    """The context of one call inside a Lambda function: its deadline from Lambda's context object, and
    whether it is the first call of this execution environment (a cold start)."""
    cold, state["cold"] = state["cold"], False
    remaining_ms = (
        lambda_context.get_remaining_time_in_millis() if lambda_context is not None else endpoint.timeout_s * 1000
    )
    return _context(endpoint, deadline=time.time() + remaining_ms / 1000, cold=cold, pipeline="lambda")


def _as_lambda_result(call: Callable[[], bytes]) -> Any:
    """Run a call for a Lambda handler: its result as a JSON value; the user's own exception escapes
    (Lambda reports the class of what escapes, so the caller sees ``ZeroDivisionError``, not ours)."""
    try:
        return json.loads(call())
    except FunctionError as error:
        raise error.__cause__ or error from None


def _register_trigger(app: Chalice, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    """A schedule becomes ``app.schedule``, an S3 trigger ``app.on_s3_event``: one Lambda function each."""
    trigger = endpoint.trigger
    assert trigger is not None
    state = {"cold": True}

    def handler(event: Any) -> Any:
        invocation = _lambda_invocation(endpoint, state, getattr(event, "context", None))
        return _as_lambda_result(lambda: call_trigger(endpoint, event, invocation))

    name = handler_name(endpoint)
    handler.__name__ = handler.__qualname__ = name
    if trigger.kind == "schedule":
        registration = app.schedule(trigger.expression, name=endpoint.lambda_name)
    else:
        registration = app.on_s3_event(
            bucket=trigger.bucket,
            events=list(trigger.events),
            prefix=trigger.prefix or None,
            suffix=trigger.suffix or None,
            name=endpoint.lambda_name,
        )
    _bind(namespace, name, registration(handler))


def _register_function(app: Chalice, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    state = {"cold": True}

    def handler(event: Any, context: Any) -> Any:
        invocation = _lambda_invocation(endpoint, state, context)
        if not isinstance(event, dict):
            raise _bad_event(event)
        if TASK_KEY in event:  # an asynchronous task submitted through /submit
            return run_task_event(endpoint, event, invocation)
        arguments = endpoint.parameters.bind(event)
        return _as_lambda_result(lambda: call_endpoint(endpoint, arguments, invocation))

    name = handler_name(endpoint)
    handler.__name__ = handler.__qualname__ = name
    _bind(namespace, name, app.lambda_function(name=endpoint.lambda_name)(handler))


def _bad_event(event: Any) -> LambdapoolError:
    return BadRequest(f"the event must be a JSON object of parameters, got a JSON {type(event).__name__}")


def _context(endpoint: Endpoint, *, deadline: float, cold: bool, pipeline: str) -> InvocationContext:
    return InvocationContext(
        request_id=uuid.uuid4().hex,
        service_id=endpoint.service_id,
        endpoint_id=endpoint.endpoint_id,
        deadline=deadline,
        cold_start=cold,
        pipeline_id=pipeline,
        folders=[os.path.join(os.getcwd(), folder) for folder in endpoint.folders],
        memory_mb=endpoint.memory_mb,
    )


def _on_lambda() -> bool:
    """Whether the routes run on AWS (not under ``chalice local`` or ``chalice.test.Client``).
    ``LAMBDAPOOL_FORWARD=0/1`` overrides."""
    override = os.environ.get("LAMBDAPOOL_FORWARD")
    if override is not None:
        return override not in ("", "0", "false", "False")
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_CHALICE_CLI_MODE")


def forwarding_enabled(endpoint: Endpoint) -> bool:
    """Whether a route forwards to the endpoint's own function: on AWS, unless the endpoint is ``inline``."""
    return not endpoint.inline and _on_lambda()


def _function_name(endpoint: Endpoint) -> str:
    """The endpoint's deployed function, from the API handler's own name (``{app}-{stage}``)."""
    return f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', '')}-{endpoint.lambda_name}"


def _authorize(app: Chalice, service: Service) -> None:
    request = app.current_request
    headers = request.headers if request is not None else {}
    if not is_authorized(service.api_keys, headers.get("authorization")):
        raise Unauthorized(
            f"service {service.service_id!r} requires an API key",
            "send the key as HTTP Basic user name (empty password) or as 'Authorization: Bearer <key>'",
        )


def _arguments(app: Chalice, service: Service, endpoint: Endpoint) -> dict[str, Any]:
    """Authorize the current request and bind its body to the endpoint's parameters."""
    _authorize(app, service)
    request = app.current_request
    raw = request.raw_body if request is not None else b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over the {MAX_BODY_BYTES}-byte limit")
    return endpoint.parameters.bind(parse_body(raw))


def _error_response(error: LambdapoolError) -> Response:
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json", **error.headers()}
    return Response(body=error.to_json().decode(), status_code=error.status, headers=headers)


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def _register_run_route(app: Chalice, service: Service, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    state = {"cold": True}

    def run_view() -> Response:
        started = time.perf_counter()
        try:
            arguments = _arguments(app, service, endpoint)
            if forwarding_enabled(endpoint):
                result, timing, api_context = _forward(endpoint, arguments, started)
            else:
                cold, state["cold"] = state["cold"], False
                invocation = _context(
                    endpoint, deadline=time.time() + endpoint.timeout_s, cold=cold, pipeline="in-process"
                )
                executed = time.perf_counter()
                result = json.loads(call_endpoint(endpoint, arguments, invocation))
                finished = time.perf_counter()
                timing = {"wait": 0.0, "coldStart": 0.0, "execution": _ms(finished - executed)}
                api_context = {"pipelineId": "in-process", "coldStart": cold}
        except LambdapoolError as error:
            return _error_response(error)
        timing["total"] = _ms(time.perf_counter() - started)
        body = {
            "response": result,
            "timing": timing,
            "apiContext": {"serviceId": endpoint.service_id, "endpointId": endpoint.endpoint_id, **api_context},
        }
        return _json_response(body)

    name = handler_name(endpoint) + "_run"
    run_view.__name__ = run_view.__qualname__ = name
    # Any content type: the body is parsed as JSON whatever the header says (the Dataiku client sends none).
    view = app.route(run_path(endpoint.service_id, endpoint.endpoint_id), methods=["POST"], content_types=_ANY_CONTENT)
    _bind(namespace, name, view(run_view))


# -- asynchronous tasks -------------------------------------------------------------------------------

_TASK_VIEW = "lambdapool_task"
_TASK_ID = re.compile(r"[0-9a-f]{32}")


class _MemoryTasks:
    """Task state in this process (``chalice local`` and ``chalice.test.Client``)."""

    bucket = ""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            task = self._tasks.get(task_id)
            return dict(task) if task is not None else None

    def put(self, task: dict[str, Any]) -> None:
        with self._lock:
            self._tasks[task["taskId"]] = dict(task)


class _S3Tasks:
    """Task state as ``tasks/<taskId>.json`` in an S3 bucket (on AWS; see infra/task-bucket.yaml)."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        self._s3 = _aws_client("s3")

    def get(self, task_id: str) -> dict[str, Any] | None:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=f"tasks/{task_id}.json")["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return None
        task: dict[str, Any] = json.loads(body)
        return task

    def put(self, task: dict[str, Any]) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=f"tasks/{task['taskId']}.json", Body=json.dumps(task).encode())


_LOCAL_TASKS = _MemoryTasks()


def _task_store() -> _MemoryTasks | _S3Tasks:
    if not _on_lambda():
        return _LOCAL_TASKS
    bucket = os.environ.get("LAMBDAPOOL_TASK_BUCKET")
    if not bucket:
        raise ConfigurationError(
            "tasks need a bucket on AWS: LAMBDAPOOL_TASK_BUCKET is not set",
            "deploy infra/task-bucket.yaml and set LAMBDAPOOL_TASK_BUCKET in the stage's environment_variables",
        )
    return _S3Tasks(bucket)


def run_task(
    endpoint: Endpoint,
    task_id: str,
    arguments: dict[str, Any],
    store: _MemoryTasks | _S3Tasks,
    invocation: InvocationContext,
) -> dict[str, Any]:
    """Run a submitted task and record its state: RUNNING, then DONE, FAILED or TIMEOUT (just before the
    function's own time runs out, since Lambda gives no chance to record it after). A task cancelled
    meanwhile keeps its CANCELLED state. Returns the final state."""
    task = store.get(task_id)
    if task is None or task["status"] in TASK_FINAL_STATES:
        return task or {"taskId": task_id, "status": "FAILED"}
    task.update(status="RUNNING", startedAt=utc_timestamp())
    store.put(task)

    def timed_out() -> None:
        latest = store.get(task_id)
        if latest is not None and latest["status"] == "RUNNING":
            error = Timeout(f"{endpoint.service_id}/{endpoint.endpoint_id} ran longer than timeout_s")
            store.put({**latest, "status": "TIMEOUT", "finishedAt": utc_timestamp(), "error": error.to_body()})

    timer = threading.Timer(max(0.0, invocation.remaining_time_ms / 1000 - 1.0), timed_out)
    timer.daemon = True
    timer.start()
    try:
        final = {"status": "DONE", "response": json.loads(call_endpoint(endpoint, arguments, invocation))}
    except LambdapoolError as error:
        final = {"status": "FAILED", "error": error.to_body()}
    finally:
        timer.cancel()
    latest = store.get(task_id) or task
    if latest["status"] in TASK_FINAL_STATES:  # cancelled (or timed out) while it ran
        return latest
    latest.update(final, finishedAt=utc_timestamp())
    store.put(latest)
    return latest


def run_task_event(endpoint: Endpoint, event: dict[str, Any], invocation: InvocationContext) -> dict[str, Any]:
    """Run the task an asynchronous invocation carries (``{TASK_KEY: {taskId, bucket}, "arguments"}``)."""
    envelope = event[TASK_KEY]
    arguments = endpoint.parameters.bind(event.get("arguments") or {})
    return run_task(endpoint, str(envelope["taskId"]), arguments, _S3Tasks(str(envelope["bucket"])), invocation)


def _register_submit_route(app: Chalice, service: Service, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    def submit_view() -> Response:
        try:
            arguments = _arguments(app, service, endpoint)
            store = _task_store()
            task_id = uuid.uuid4().hex
            task: dict[str, Any] = {
                "taskId": task_id,
                "serviceId": endpoint.service_id,
                "endpointId": endpoint.endpoint_id,
                "status": "QUEUED",
                "submittedAt": utc_timestamp(),
                "startedAt": None,
                "finishedAt": None,
            }
            store.put(task)
            if forwarding_enabled(endpoint):
                payload = {TASK_KEY: {"taskId": task_id, "bucket": store.bucket}, "arguments": arguments}
                _lambda_client(endpoint).invoke(
                    FunctionName=_function_name(endpoint), InvocationType="Event", Payload=json.dumps(payload).encode()
                )
            else:
                invocation = _context(
                    endpoint, deadline=time.time() + endpoint.timeout_s, cold=False, pipeline="in-process"
                )
                run_task(endpoint, task_id, arguments, store, invocation)
        except LambdapoolError as error:
            return _error_response(error)
        return _json_response({"taskId": task_id}, 202)

    name = handler_name(endpoint) + "_submit"
    submit_view.__name__ = submit_view.__qualname__ = name
    path = run_path(endpoint.service_id, endpoint.endpoint_id).removesuffix("/run") + "/submit"
    _bind(namespace, name, app.route(path, methods=["POST"], content_types=_ANY_CONTENT)(submit_view))


def _register_task_route(app: Chalice, namespace: dict[str, Any]) -> None:
    """``GET``/``DELETE /public/api/v1/tasks/{task_id}`` for every service mounted on ``app``.

    On AWS a running invocation cannot be stopped: DELETE marks the task CANCELLED and its result is dropped.
    """

    def task_view(task_id: str) -> Response:
        try:
            task = _task_store().get(task_id) if _TASK_ID.fullmatch(task_id) else None
            services = {service.service_id: service for service in mounted_services(app)}
            if task is None or task["serviceId"] not in services:
                raise NotFound(f"unknown task {task_id!r}")
            _authorize(app, services[task["serviceId"]])
            request = app.current_request
            if request is not None and request.method == "DELETE" and task["status"] not in TASK_FINAL_STATES:
                task.update(status="CANCELLED", finishedAt=utc_timestamp())
                _task_store().put(task)
        except LambdapoolError as error:
            return _error_response(error)
        return _json_response(task)

    task_view.__name__ = task_view.__qualname__ = _TASK_VIEW
    _bind(namespace, _TASK_VIEW, app.route("/public/api/v1/tasks/{task_id}", methods=["GET", "DELETE"])(task_view))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENT_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
)


def _aws_client(service: str, read_timeout_s: int = 60) -> Any:
    """A boto3 client, created once per process and settings (creating one costs tens of milliseconds).

    Keyed by the environment's endpoint, region and credentials: a warm Lambda reuses it, and a process whose
    settings change (tests pointing at another local AWS) gets a new one.
    """
    key = (service, read_timeout_s, *(os.environ.get(name) for name in _CLIENT_SETTINGS))
    client = _CLIENTS.get(key)
    if client is None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout_s, connect_timeout=5)
        client = _CLIENTS[key] = boto3.session.Session().client(service, config=config)
    return client


def _lambda_client(endpoint: Endpoint) -> Any:
    return _aws_client("lambda", endpoint.timeout_s + 5)


def _forward(
    endpoint: Endpoint, arguments: dict[str, Any], started: float
) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """Invoke the endpoint's function synchronously; retry throttles until ``timeout_ms``."""
    client = _lambda_client(endpoint)
    function_name = _function_name(endpoint)
    payload = json.dumps(arguments).encode()
    qualifier = os.environ.get("LAMBDAPOOL_FUNCTION_QUALIFIER")  # the alias with provisioned concurrency
    extra = {"Qualifier": qualifier} if qualifier else {}
    give_up = time.monotonic() + endpoint.pool.timeout_ms / 1000
    delay_s = 0.05
    while True:
        invoked = time.perf_counter()
        try:
            answer = client.invoke(FunctionName=function_name, Payload=payload, LogType="Tail", **extra)
            break
        except client.exceptions.TooManyRequestsException:
            if time.monotonic() + delay_s > give_up:
                raise QueueTimeout(
                    f"{endpoint.service_id}/{endpoint.endpoint_id}: throttled for timeout_ms="
                    f"{endpoint.pool.timeout_ms} (all {endpoint.pool.ceil} concurrent executions busy)",
                    "Lambda throttled every attempt; raise ceil (reserved concurrency) or timeout_ms",
                    retry_after_s=1,
                ) from None
            time.sleep(random.uniform(0, delay_s))  # full jitter
            delay_s = min(delay_s * 2, 1.0)
    finished = time.perf_counter()
    body = answer["Payload"].read()
    init = _INIT_DURATION.search(base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace"))
    cold_ms = float(init.group(1)) if init else 0.0
    if answer.get("FunctionError"):
        raise _function_error(json.loads(body or b"{}"))
    timing = {"wait": _ms(invoked - started), "coldStart": cold_ms, "execution": _ms(finished - invoked)}
    return json.loads(body or b"null"), timing, {"pipelineId": function_name, "coldStart": init is not None}


def _function_error(body: dict[str, Any]) -> LambdapoolError:
    """The error envelope for a function error Lambda reported (``X-Amz-Function-Error``)."""
    error_type = str(body.get("errorType", ""))
    message = str(body.get("errorMessage", "the function failed"))
    detail = "\n".join(body.get("stackTrace") or []) or message
    if not error_type and "timed out" in message:  # Lambda's own timeout carries no errorType
        return Timeout(message, detail)
    if error_type == "Runtime.OutOfMemory":
        return OutOfMemory(message, detail)
    if error_type.startswith("Runtime."):  # Runtime.ExitError and the like: the process died
        return PipelineCrashed(message, detail)
    return error_from_body({"errorType": error_type or "Error", "message": message, "detailedMessage": detail})
