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
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, CloudWatchEvent, Response, S3Event

from ._errors import (
    BadRequest,
    FunctionError,
    LambdapoolError,
    OutOfMemory,
    PayloadTooLarge,
    PipelineCrashed,
    QueueTimeout,
    Timeout,
    error_from_body,
)
from ._model import Endpoint, InvocationContext, Service, call_endpoint, call_trigger, parse_body, record_mount

__all__ = ["LAMBDA_NAME_LIMIT", "deployed_function_name", "handler_name", "mount", "run_path", "trigger_event"]

MAX_BODY_BYTES = 6 * 2**20
#: AWS Lambda's limit on a function name.
LAMBDA_NAME_LIMIT = 64
# Chalice requires one binary-ness per route: these are the textual types a JSON body arrives with.
_ANY_CONTENT = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
_INIT_DURATION = re.compile(r"Init Duration: ([0-9.]+) ms")


def run_path(service_id: str, endpoint_id: str) -> str:
    """The run route of an endpoint: ``/public/api/v1/{service}/{endpoint}/run``."""
    return f"/public/api/v1/{service_id}/{endpoint_id}/run"


def deployed_function_name(app_name: str, stage: str, endpoint: Endpoint) -> str:
    """The name ``chalice deploy`` gives an endpoint's function: ``{app}-{stage}-{service}-{endpoint}``."""
    return f"{app_name}-{stage}-{endpoint.lambda_name}"


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
            _register_run_route(app, endpoint, namespace)


def _bind(namespace: dict[str, Any], name: str, handler: Callable[..., Any]) -> None:
    if name in namespace:
        raise ValueError(f"mount(): app.py already defines {name!r}; lambdapool needs that name for a handler")
    namespace[name] = handler


def _check_name_length(app: Chalice, endpoint: Endpoint, stage: str) -> None:
    deployed = deployed_function_name(app.app_name, stage, endpoint)
    if not endpoint.inline and len(deployed) > LAMBDA_NAME_LIMIT:
        raise ValueError(
            f"endpoint {endpoint.service_id}/{endpoint.endpoint_id} would deploy as {deployed!r}, "
            f"{len(deployed)} characters; Lambda allows {LAMBDA_NAME_LIMIT}: shorten the app, service or "
            "endpoint id"
        )


def trigger_event(endpoint: Endpoint, raw_event: dict[str, Any], context: Any = None) -> Any:
    """The Chalice event object a trigger endpoint receives for a raw Lambda event: a ``CloudWatchEvent``
    for a schedule, an ``S3Event`` for an S3 trigger (the same classes Chalice hands its own handlers)."""
    assert endpoint.trigger is not None
    if endpoint.trigger.kind == "schedule":
        return CloudWatchEvent(raw_event, context)
    return S3Event(raw_event, context)


def _register_trigger(app: Chalice, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    """A schedule becomes ``app.schedule``, an S3 trigger ``app.on_s3_event``: one Lambda function each."""
    trigger = endpoint.trigger
    assert trigger is not None
    state = {"cold": True}

    def handler(event: Any) -> Any:
        cold, state["cold"] = state["cold"], False
        lambda_context = getattr(event, "context", None)
        remaining_ms = (
            lambda_context.get_remaining_time_in_millis() if lambda_context is not None else endpoint.timeout_s * 1000
        )
        invocation = _context(endpoint, deadline=time.time() + remaining_ms / 1000, cold=cold, pipeline="lambda")
        try:
            return json.loads(call_trigger(endpoint, event, invocation))
        except FunctionError as error:
            raise error.__cause__ or error from None

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
        cold, state["cold"] = state["cold"], False
        if not isinstance(event, dict):
            raise _bad_event(event)
        arguments = endpoint.parameters.bind(event)
        remaining_ms = context.get_remaining_time_in_millis() if context is not None else endpoint.timeout_s * 1000
        invocation = _context(endpoint, deadline=time.time() + remaining_ms / 1000, cold=cold, pipeline="lambda")
        try:
            return json.loads(call_endpoint(endpoint, arguments, invocation))
        except FunctionError as error:
            # Lambda reports the class of what escapes: let the user's own exception escape.
            raise error.__cause__ or error from None

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


def forwarding_enabled(endpoint: Endpoint) -> bool:
    """Whether a run route forwards to the endpoint's function: on Lambda, never under Chalice's CLI
    (``chalice local``) or for ``inline`` endpoints. ``LAMBDAPOOL_FORWARD=0/1`` overrides."""
    if endpoint.inline:
        return False
    override = os.environ.get("LAMBDAPOOL_FORWARD")
    if override is not None:
        return override not in ("", "0", "false", "False")
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_CHALICE_CLI_MODE")


def _register_run_route(app: Chalice, endpoint: Endpoint, namespace: dict[str, Any]) -> None:
    state = {"cold": True}

    def run_view() -> Response:
        started = time.perf_counter()
        request = app.current_request
        try:
            raw = request.raw_body if request is not None else b""
            if len(raw) > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"request body is over the {MAX_BODY_BYTES}-byte limit")
            arguments = endpoint.parameters.bind(parse_body(raw))
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
            headers: dict[str, str | list[str]] = {"Content-Type": "application/json", **error.headers()}
            return Response(body=error.to_json().decode(), status_code=error.status, headers=headers)
        timing["total"] = _ms(time.perf_counter() - started)
        body = {
            "response": result,
            "timing": timing,
            "apiContext": {"serviceId": endpoint.service_id, "endpointId": endpoint.endpoint_id, **api_context},
        }
        return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})

    name = handler_name(endpoint) + "_run"
    run_view.__name__ = run_view.__qualname__ = name
    # Any content type: the body is parsed as JSON whatever the header says (the Dataiku client sends none).
    view = app.route(run_path(endpoint.service_id, endpoint.endpoint_id), methods=["POST"], content_types=_ANY_CONTENT)
    _bind(namespace, name, view(run_view))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _lambda_client(endpoint: Endpoint) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, read_timeout=endpoint.timeout_s + 5, connect_timeout=5)
    return boto3.client("lambda", config=config)


def _forward(
    endpoint: Endpoint, arguments: dict[str, Any], started: float
) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """Invoke the endpoint's function synchronously; retry throttles until ``timeout_ms``."""
    client = _lambda_client(endpoint)
    api_function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")  # Chalice's API handler: {app}-{stage}
    function_name = f"{api_function}-{endpoint.lambda_name}"
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
