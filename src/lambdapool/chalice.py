"""The Chalice adapter: ``mount(app, *services)`` turns function endpoints into Chalice registrations.

For every endpoint it registers:

- a pure Lambda function ``{service}-{endpoint}`` (``app.lambda_function``) that runs the endpoint, so its
  pool maps onto that function's settings (``ceil`` -> reserved concurrency, ``timeout_s``, ``memory_mb``);
  a trigger endpoint becomes ``app.schedule`` or ``app.on_s3_event`` instead;
- the routes ``POST /public/api/v1/{service}/{endpoint}/run`` and ``/submit``. Deployed on Lambda, the run
  route forwards the call to the endpoint's function (:mod:`lambdapool._forward`); under ``chalice local``
  and ``chalice.test.Client``, where no Lambda exists, it runs the endpoint in process. An endpoint declared
  ``inline=True`` always runs inside the route's handler and gets no function of its own;
- once per app, ``GET``/``DELETE /public/api/v1/tasks/{task_id}`` (task state: :mod:`lambdapool._tasks`).

Runtime code: it goes into every Lambda package, so it imports only the model and ``chalice.app`` (boto3,
which the Lambda runtime provides, only when a call is forwarded).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from chalice.app import Blueprint, Chalice, CloudWatchEvent, Response, S3Event

from ._errors import (
    BadRequest,
    Cancelled,
    FunctionError,
    LambdapoolError,
    NotFound,
    PayloadTooLarge,
    ResponseSizeTooLarge,
)
from ._folders import folder_paths
from ._forward import forward, forwarding_enabled, function_name, lambda_client, ms, on_lambda
from ._gateway import check_event, check_response
from ._invocation import InvocationContext, LambdaFunction, call_endpoint, call_trigger, parse_body
from ._keys import check_api_key
from ._limits import ASYNC_PAYLOAD_LIMIT_BYTES, SYNC_PAYLOAD_LIMIT_BYTES, SYNC_RESPONSE_LIMIT_BYTES
from ._model import Endpoint, EndpointSpec, Service
from ._names import TASK_KEY, check_deployed_name, run_path, submit_path
from ._tasks import (
    MemoryTaskStore,
    S3TaskStore,
    TaskRecord,
    TaskStore,
    run_task,
    run_task_event,
    task_bucket,
    task_event,
)
from ._triggers import S3Trigger, ScheduleTrigger, assert_never

__all__ = ["handler_name", "mount", "mounted_services", "trigger_event"]

TASK_PATH = "/public/api/v1/tasks/{task_id}"
# Chalice requires one binary-ness per route: these are the textual types a JSON body arrives with.
_ANY_CONTENT = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
_JSON_HEADERS = {"Content-Type": "application/json"}
_LOCAL_TASKS = MemoryTaskStore()
_MOUNTS: weakref.WeakKeyDictionary[Any, tuple[Service, ...]] = weakref.WeakKeyDictionary()


def handler_name(endpoint: EndpointSpec) -> str:
    """The module attribute (and ``__name__``) of an endpoint's Lambda handler."""
    return "lambdapool_" + f"{endpoint.service_id}__{endpoint.endpoint_id}".replace("-", "_h_")


def mount(app: Chalice, *services: Service, module: ModuleType | str | None = None, stage: str = "dev") -> None:
    """Register every endpoint of ``services`` on ``app`` (see the module docstring).

    The Lambda handlers become attributes of ``module``, the module that defines ``app`` unless given
    (a module or its name): Chalice's deployer imports that module and looks them up there. Without
    ``module``, that is the module imported as ``app`` (how Chalice imports ``app.py``) when it holds
    ``app``, else the only imported module that does; so ``mount`` may be called from a helper module.

    Raises ``ValueError`` (and registers nothing) if that module cannot be told, if a handler name is
    already taken in it, or if a deployed function name (``{app}-{stage}-{service}-{endpoint}``, checked for
    ``stage``) would exceed Lambda's 64 characters; and if, after registering, Chalice's deployer would not
    find a handler.
    """
    for service in services:
        if not isinstance(service, Service):
            raise ValueError(f"mount() takes lambdapool.Service objects, got {service!r}")
    endpoints = [(service, endpoint) for service in services for endpoint in service.endpoints.values()]
    for _, endpoint in endpoints:
        if not endpoint.inline:
            check_deployed_name(app.app_name, stage, endpoint.lambda_name)
    # Only Lambda handlers need a module; an app of inline endpoints alone is served by its API handler.
    target = _handler_module(app, module) if any(not endpoint.inline for _, endpoint in endpoints) else None
    blueprint = Blueprint(target.__name__ if target is not None else "app")  # handlers: "<module>.<name>"
    handlers: dict[str, Callable[..., Any]] = {}
    for service, endpoint in endpoints:
        if endpoint.trigger is not None:
            handlers[handler_name(endpoint)] = _register_trigger(blueprint, endpoint)
            continue
        if not endpoint.inline:
            handlers[handler_name(endpoint)] = _register_function(blueprint, endpoint)
        _register_routes(blueprint, app, service, endpoint)
    if TASK_PATH not in app.routes:
        _register_task_route(blueprint, app)
    mounted = _mounted_with(app, services)
    if target is not None:
        _bind(target, handlers)
    _MOUNTS[app] = mounted
    app.register_blueprint(blueprint)
    _check_resolvable(app, handlers)


def _bind(target: ModuleType, handlers: dict[str, Callable[..., Any]]) -> None:
    """Make ``handlers`` attributes of ``target``, where Chalice's deployer will look for them."""
    taken = sorted(name for name in handlers if name in vars(target))
    if taken:
        raise ValueError(
            f"mount(): {target.__name__} already defines {taken[0]!r}; lambdapool needs that name for a handler"
        )
    if handlers and sys.modules.get(target.__name__) is not target:
        _not_resolvable(f"{target.__name__}.{next(iter(handlers))}")
    vars(target).update(handlers)


def _not_resolvable(handler_string: str) -> None:
    raise ValueError(
        f"mount(): Chalice's deployer would look for {handler_string!r} and not find it: import the module "
        "that defines the app under its name (Chalice imports app.py as 'app'), or pass module= to mount()"
    )


def _handler_module(app: Chalice, module: ModuleType | str | None) -> ModuleType:
    if isinstance(module, ModuleType):
        return module
    if isinstance(module, str):
        if module not in sys.modules:
            raise ValueError(f"mount(): module {module!r} is not imported")
        return sys.modules[module]
    conventional = sys.modules.get("app")  # how chalice local, chalice deploy and lambdapool import app.py
    if conventional is not None and _holds(conventional, app):
        return conventional
    holders = [found for found in list(sys.modules.values()) if isinstance(found, ModuleType) and _holds(found, app)]
    if len(holders) != 1:
        which = ", ".join(sorted(found.__name__ for found in holders)) or "none"
        raise ValueError(
            f"mount(): cannot tell which module Chalice will load the handlers from (modules holding the app: "
            f"{which}); pass module=__name__ from the module that defines the app"
        )
    return holders[0]


def _holds(module: ModuleType, app: Chalice) -> bool:
    return any(value is app for value in list(vars(module).values()))


def _check_resolvable(app: Chalice, handlers: dict[str, Callable[..., Any]]) -> None:
    """Resolve every handler we registered as Chalice's deployer does (``module.attribute``)."""
    handler_strings = [registration.handler_string for registration in app.pure_lambda_functions]
    handler_strings += [source.handler_string for source in app.event_sources]
    for handler_string in handler_strings:
        module_name, _, attribute = handler_string.rpartition(".")
        if attribute not in handlers:
            continue  # the app's own handler
        module = sys.modules.get(module_name)
        if module is None or getattr(module, attribute, None) is not handlers[attribute]:
            _not_resolvable(handler_string)


def _mounted_with(app: Chalice, services: Sequence[Service]) -> tuple[Service, ...]:
    """The services mounted on ``app`` once ``services`` are; raises ``ValueError`` for a clash of ids."""
    known = {service.service_id: service for service in _MOUNTS.get(app, ())}
    for service in services:
        other = known.get(service.service_id)
        if other is not None and other is not service:
            raise ValueError(f"two different services named {service.service_id!r} are mounted on the same app")
        known[service.service_id] = service
    return tuple(known.values())


def mounted_services(app: Any) -> tuple[Service, ...]:
    """The services mounted on ``app`` with :func:`mount`, in mount order."""
    try:
        return _MOUNTS.get(app, ())
    except TypeError:  # not weak-referenceable: nothing was mounted on it
        return ()


def trigger_event(endpoint: Endpoint, raw_event: dict[str, Any], context: Any = None) -> Any:
    """The Chalice event object a trigger endpoint receives for a raw Lambda event: a ``CloudWatchEvent``
    for a schedule, an ``S3Event`` for an S3 trigger (the same classes Chalice hands its own handlers), whose
    ``context`` is the call's context, as Chalice gives it on Lambda."""
    trigger = endpoint.trigger
    assert trigger is not None
    if isinstance(trigger, ScheduleTrigger):
        return CloudWatchEvent(raw_event, context)
    if isinstance(trigger, S3Trigger):
        return S3Event(raw_event, context)
    assert_never(trigger)


class _ColdStart:
    """Whether the next call is the first of this execution environment (or process)."""

    def __init__(self) -> None:
        self._cold = True

    def take(self) -> bool:
        cold, self._cold = self._cold, False
        return cold


def _context(
    endpoint: Endpoint, *, deadline: float, cold: bool, pipeline: str, lambda_context: Any = None
) -> InvocationContext:
    """The context of one call. Lambda's context object, when there is one, gives the request id, the
    function's names and the caller's identity; what it does not give (all of it under ``chalice local``)
    is derived as in the emulator's pipelines: from Lambda's variables where they are set
    (``AWS_LAMBDA_FUNCTION_NAME``...), else from the endpoint's Chalice name."""
    function = LambdaFunction.from_environment(os.environ, endpoint.lambda_name, endpoint.memory_mb)
    if lambda_context is not None:
        function = LambdaFunction.from_lambda_context(lambda_context, function)
    return InvocationContext(
        request_id=str(getattr(lambda_context, "aws_request_id", None) or uuid.uuid4().hex),
        service_id=endpoint.service_id,
        endpoint_id=endpoint.endpoint_id,
        deadline=deadline,
        cold_start=cold,
        pipeline_id=pipeline,
        folders=folder_paths(endpoint.folders, endpoint.function),
        function=function,
        identity=getattr(lambda_context, "identity", None),
        client_context=getattr(lambda_context, "client_context", None),
    )


def _lambda_context(endpoint: Endpoint, cold: _ColdStart, lambda_context: Any) -> InvocationContext:
    """The context of one call inside a Lambda function: its request id, names and deadline from Lambda's
    context object."""
    remaining_ms = (
        lambda_context.get_remaining_time_in_millis() if lambda_context is not None else endpoint.timeout_s * 1000
    )
    deadline = time.time() + remaining_ms / 1000
    return _context(endpoint, deadline=deadline, cold=cold.take(), pipeline="lambda", lambda_context=lambda_context)


def _local_context(endpoint: Endpoint, cold: bool) -> InvocationContext:
    """The context of one call run in process (``chalice local``, ``chalice.test.Client``)."""
    return _context(endpoint, deadline=time.time() + endpoint.timeout_s, cold=cold, pipeline="in-process")


def _as_lambda_result(call: Callable[[], bytes]) -> Any:
    """Run a call for a Lambda handler: its result as a JSON value; the user's own exception escapes
    (Lambda reports the class of what escapes, so the caller sees ``ZeroDivisionError``, not ours)."""
    try:
        return json.loads(call())
    except FunctionError as error:
        raise error.__cause__ or error from None


def _named(handler: Callable[..., Any], name: str) -> Callable[..., Any]:
    handler.__name__ = handler.__qualname__ = name
    return handler


def _register_trigger(blueprint: Blueprint, endpoint: Endpoint) -> Callable[..., Any]:
    """A schedule becomes ``app.schedule``, an S3 trigger ``app.on_s3_event``: one Lambda function each."""
    trigger = endpoint.trigger
    assert trigger is not None
    cold = _ColdStart()

    def handler(event: Any) -> Any:
        invocation = _lambda_context(endpoint, cold, getattr(event, "context", None))
        return _as_lambda_result(lambda: call_trigger(endpoint, event, invocation))

    _named(handler, handler_name(endpoint))
    if isinstance(trigger, ScheduleTrigger):
        registration = blueprint.schedule(trigger.expression, name=endpoint.lambda_name)
    elif isinstance(trigger, S3Trigger):
        registration = blueprint.on_s3_event(
            bucket=trigger.bucket,
            events=list(trigger.events),
            prefix=trigger.prefix or None,
            suffix=trigger.suffix or None,
            name=endpoint.lambda_name,
        )
    else:
        assert_never(trigger)
    registered: Callable[..., Any] = registration(handler)
    return registered


def _register_function(blueprint: Blueprint, endpoint: Endpoint) -> Callable[..., Any]:
    cold = _ColdStart()

    def handler(event: Any, context: Any) -> Any:
        invocation = _lambda_context(endpoint, cold, context)
        if not isinstance(event, dict):
            raise BadRequest.not_an_object("the event", event)
        if TASK_KEY in event:  # an asynchronous task submitted through /submit
            return run_task_event(endpoint, event, invocation)
        arguments = endpoint.parameters.bind(event)
        return _as_lambda_result(lambda: call_endpoint(endpoint, arguments, invocation))

    _named(handler, handler_name(endpoint))
    registered: Callable[..., Any] = blueprint.lambda_function(name=endpoint.lambda_name)(handler)
    return registered


def _authorize(app: Chalice, service: Service) -> None:
    request = app.current_request
    check_api_key(service.service_id, service.api_keys, request.headers.get("authorization") if request else None)


def _arguments(
    app: Chalice, service: Service, endpoint: Endpoint, limit_bytes: int = SYNC_PAYLOAD_LIMIT_BYTES
) -> dict[str, Any]:
    """Authorize the current request and bind its body (at most ``limit_bytes``) to the endpoint's
    parameters."""
    _authorize(app, service)
    request = app.current_request
    raw = request.raw_body if request is not None else b""
    if len(raw) > limit_bytes:
        asynchronous = limit_bytes == ASYNC_PAYLOAD_LIMIT_BYTES
        raise PayloadTooLarge.over_limit(limit_bytes, len(raw), asynchronous=asynchronous)
    if request is not None and not on_lambda():  # deployed, a request over the limit never gets here
        params = request.query_params
        query = {name: params.getlist(name) for name in params} if params is not None else None
        path = request.context.get("path") or request.context.get("resourcePath", "")
        body = raw if isinstance(raw, bytes) else raw.encode()
        check_event(request.method, path, request.headers, body, query=query, binary_types=app.api.binary_types)
    return endpoint.parameters.bind(parse_body(raw))


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=body, status_code=status, headers={**_JSON_HEADERS, **(headers or {})})


def _checked_json_response(app: Chalice, body: Any) -> Response:
    """A 200 with ``body`` as JSON, checked at its size once encoded into the API handler's response: over
    Lambda's limit, it would be API Gateway's bare 502 deployed, so it is answered here instead
    (:class:`ResponseSizeTooLarge`), the same way everywhere."""
    encoded = json.dumps(body, separators=(",", ":"))
    check_response(200, _JSON_HEADERS, encoded, binary_types=app.api.binary_types)
    return _json_response(encoded)


def _answer(view: Callable[..., Response]) -> Callable[..., Response]:
    """A view that answers every :class:`LambdapoolError` with its envelope and status."""

    def answered(**path: Any) -> Response:
        try:
            return view(**path)
        except LambdapoolError as error:
            return _json_response(error.to_json().decode(), error.status, error.headers())

    return answered


def _register_routes(blueprint: Blueprint, app: Chalice, service: Service, endpoint: Endpoint) -> None:
    cold = _ColdStart()

    def run_view() -> Response:
        started = time.perf_counter()
        arguments = _arguments(app, service, endpoint)
        if forwarding_enabled(endpoint):
            forwarded = forward(endpoint, arguments, started)
            result, timing, api_context = forwarded.result, forwarded.timing, forwarded.api_context
        else:
            invocation = _local_context(endpoint, cold.take())
            executed = time.perf_counter()
            encoded = call_endpoint(endpoint, arguments, invocation)
            if len(encoded) > SYNC_RESPONSE_LIMIT_BYTES:  # Lambda would refuse it: so does chalice local
                raise ResponseSizeTooLarge.over(len(encoded), SYNC_RESPONSE_LIMIT_BYTES)
            result = json.loads(encoded)
            timing = {"wait": 0.0, "coldStart": 0.0, "execution": ms(time.perf_counter() - executed)}
            api_context = {"pipelineId": "in-process", "coldStart": invocation.cold_start}
        timing["total"] = ms(time.perf_counter() - started)
        body = {
            "response": result,
            "timing": timing,
            "apiContext": {"serviceId": endpoint.service_id, "endpointId": endpoint.endpoint_id, **api_context},
        }
        return _checked_json_response(app, body)

    def submit_view() -> Response:
        arguments = _arguments(app, service, endpoint, ASYNC_PAYLOAD_LIMIT_BYTES)
        store = _task_store()
        record = TaskRecord.new(endpoint.service_id, endpoint.endpoint_id)
        store.put(record)
        if forwarding_enabled(endpoint):
            assert isinstance(store, S3TaskStore)
            payload = json.dumps(task_event(record, store.bucket, arguments)).encode()
            lambda_client(endpoint).invoke(
                FunctionName=function_name(endpoint), InvocationType="Event", Payload=payload
            )
        else:
            run_task(endpoint, record.task_id, arguments, store, _local_context(endpoint, cold=False))
        return _json_response({"taskId": record.task_id}, 202)

    # Any content type: the body is parsed as JSON whatever the header says (the Dataiku client sends none).
    for path, view, suffix in ((run_path, run_view, "_run"), (submit_path, submit_view, "_submit")):
        route = blueprint.route(
            path(endpoint.service_id, endpoint.endpoint_id), methods=["POST"], content_types=_ANY_CONTENT
        )
        route(_named(_answer(view), handler_name(endpoint) + suffix))


def _task_store() -> TaskStore:
    return S3TaskStore(task_bucket()) if on_lambda() else _LOCAL_TASKS


def _register_task_route(blueprint: Blueprint, app: Chalice) -> None:
    """``GET``/``DELETE /public/api/v1/tasks/{task_id}`` for every service mounted on ``app``.

    On AWS a running invocation cannot be stopped: DELETE marks the task CANCELLED and its result is dropped.
    """

    def task_view(task_id: str) -> Response:
        store = _task_store()
        record = store.get(task_id)
        services = {service.service_id: service for service in mounted_services(app)}
        if record is None or record.service_id not in services:
            raise NotFound.task(task_id)
        _authorize(app, services[record.service_id])
        request = app.current_request
        if request is not None and request.method == "DELETE":
            record = store.update(task_id, lambda latest: latest.ended_with(Cancelled.unstoppable())) or record
        return _checked_json_response(app, record.to_json())

    blueprint.route(TASK_PATH, methods=["GET", "DELETE"])(_named(_answer(task_view), "lambdapool_task"))
