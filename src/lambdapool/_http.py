"""The emulator's HTTP surface (DESIGN.md section 2) as a Werkzeug WSGI application."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request, Response

from ._errors import BadRequest, LambdapoolError, NotFound, PayloadTooLarge, QueueFull, Unauthorized
from ._metrics import EmulatorCollector
from ._model import TASK_KEY, is_authorized, parse_body

if TYPE_CHECKING:
    from ._emulator import Emulator, ServedService
    from ._runtime import CallResult, EndpointRuntime
    from ._tasks import TaskRunner

log = logging.getLogger("lambdapool.http")
_DRAIN_LIMIT_BYTES = 256 * 2**20  # past this an oversized upload is cut off instead of read and discarded

_ID = r"[A-Za-z0-9_-]+"
#: (path pattern, allowed methods, view name). Path parameters only ever match ids (``[A-Za-z0-9_-]+``).
#: A regex table rather than werkzeug.routing.Map: matching it costs about a microsecond, the Map's
#: matcher about forty, and the run route is the emulator's hot path.
_ROUTES: tuple[tuple[re.Pattern[str], frozenset[str], str], ...] = tuple(
    (re.compile(pattern + "/?"), frozenset(methods), view)
    for pattern, methods, view in (
        (rf"/public/api/v1/(?P<service_id>{_ID})/(?P<endpoint_id>{_ID})/run", {"POST"}, "run"),
        (rf"/public/api/v1/(?P<service_id>{_ID})/(?P<endpoint_id>{_ID})/submit", {"POST"}, "submit"),
        (r"/public/api/v1/tasks/(?P<task_id>[A-Za-z0-9_-]+)", {"GET", "DELETE"}, "task"),
        (r"/public/api/v1/tasks", {"GET"}, "tasks"),
        (r"/2015-03-31/functions/(?P<function_name>[A-Za-z0-9_:.%-]+)/invocations", {"POST"}, "invoke"),
        (r"/__lambdapool__/status", {"GET"}, "status"),
        (rf"/__lambdapool__/schedules/(?P<service_id>{_ID})/(?P<endpoint_id>{_ID})/fire", {"POST"}, "fire"),
        (r"/__lambdapool__/aws", {"GET"}, "aws"),
        (r"/metrics", {"GET"}, "metrics"),
    )
)


class MethodNotAllowed(LambdapoolError):
    """The route exists but not for this HTTP method."""

    status = 405
    error_type = "MethodNotAllowed"


def match_route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The view and path parameters for a request; raises :class:`NotFound` or :class:`MethodNotAllowed`."""
    for pattern, methods, view in _ROUTES:
        found = pattern.fullmatch(path)
        if found is None:
            continue
        if method not in methods:
            allowed = ", ".join(sorted(methods))
            raise MethodNotAllowed(f"{method} is not allowed on {path}", f"allowed methods: {allowed}")
        return view, found.groupdict()
    raise NotFound(f"no route {method} {path}")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(data, status=status, headers=headers, content_type="application/json")


def lambda_arguments(runtime: EndpointRuntime, payload: dict[str, Any]) -> dict[str, Any]:
    """What a Lambda event becomes for the pipeline: a trigger's raw event, a task envelope (its arguments
    checked here), or the bound parameters of a plain call. Raises :class:`BadRequest` if they do not bind."""
    if runtime.spec.trigger is not None:
        return payload
    if TASK_KEY in payload:
        runtime.spec.parameters.bind(payload.get("arguments") or {})
        return payload
    return runtime.spec.parameters.bind(payload)


def report_line(runtime: EndpointRuntime, result: CallResult) -> str:
    """Lambda's ``REPORT`` log line for a call (what ``LogType=Tail`` returns), with ``Init Duration`` on a
    cold start, so that callers can read cold starts the same way from the emulator and from AWS."""
    line = (
        f"REPORT RequestId: {uuid.uuid4()}\tDuration: {result.timing['execution']:.2f} ms\t"
        f"Billed Duration: {math.ceil(result.timing['execution'])} ms\tMemory Size: {runtime.spec.memory_mb} MB"
    )
    if result.api_context["coldStart"]:
        line += f"\tInit Duration: {result.timing['coldStart']:.2f} ms"
    return line + "\t\n"


def lambda_error(status: int, error_type: str, message: str, **extra: str) -> Response:
    """An error of the Lambda service itself (not of the function), as botocore parses it."""
    body = {"Type": "User", "message": message, **extra}
    return json_response(body, status, {"x-amzn-ErrorType": error_type})


def error_response(error: LambdapoolError) -> Response:
    return json_response(error.to_json(), error.status, error.headers())


def request_is_authorized(service: ServedService, request: Request) -> bool:
    """Whether the request carries one of the service's API keys (see :func:`lambdapool._model.is_authorized`)."""
    return is_authorized(service.api_keys, request.headers.get("Authorization"))


def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; raises :class:`PayloadTooLarge` beyond it.

    An oversized body is read and discarded (up to a bound) so that the client, still sending, gets the
    413 instead of a reset connection.
    """
    stream = request.stream
    declared = request.content_length
    try:
        if declared is not None and declared > limit:
            _drain(stream, declared)
            raise _too_large(limit, declared)
        data = stream.read(limit + 1)
        while declared is not None and len(data) < declared:  # a socket read may return part of it
            more = stream.read(declared - len(data))
            if not more:
                raise ClientDisconnected()
            data += more
        if len(data) > limit:
            _drain(stream, None)
            raise _too_large(limit, declared)
    except ClientDisconnected as exc:
        raise BadRequest(
            "the request body ended early",
            f"the client sent fewer bytes than its Content-Length ({declared}) announced",
        ) from exc
    return bytes(data)


def _too_large(limit: int, size: int | None) -> PayloadTooLarge:
    got = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLarge(
        f"request body{got} is over the {limit}-byte limit",
        f"request bodies are limited to {limit} bytes, Lambda's synchronous payload limit; pass large data "
        "through S3 and send its key instead",
    )


def _drain(stream: Any, declared: int | None) -> None:
    remaining = min(declared, _DRAIN_LIMIT_BYTES) if declared is not None else _DRAIN_LIMIT_BYTES
    while remaining > 0:
        chunk = stream.read(min(remaining, 2**20))
        if not chunk:
            return
        remaining -= len(chunk)


def envelope(result: CallResult) -> bytes:
    """The run route's 200 body, with the function's result spliced in without re-encoding it."""
    return b"".join(
        (
            b'{"response":',
            result.result,
            b',"timing":',
            result.timing_json(),
            b',"apiContext":',
            result.api_context_json(),
            b"}",
        )
    )


class EmulatorApp:
    """The WSGI application of one :class:`~lambdapool._emulator.Emulator`."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EmulatorCollector(emulator))
        self._views: dict[str, Callable[..., Response]] = {
            "run": self.run,
            "submit": self.submit,
            "task": self.task,
            "tasks": self.list_tasks,
            "invoke": self.invoke,
            "status": self.status,
            "fire": self.fire,
            "aws": self.aws,
            "metrics": self.metrics,
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            name, arguments = match_route(request.method, request.path)
            return self._views[name](request, **arguments)
        except LambdapoolError as error:
            return error_response(error)
        except Exception:
            log.exception("internal error answering %s %s", request.method, request.path)
            body = {
                "errorType": "InternalError",
                "message": "the emulator failed",
                "detailedMessage": "see its log",
            }
            return json_response(body, 500)

    # -- views ----------------------------------------------------------------------------------------

    def _service(self, service_id: str, request: Request) -> ServedService:
        service = self.emulator.services.get(service_id)
        if service is None:
            raise NotFound(
                f"unknown service {service_id!r}", f"services: {', '.join(self.emulator.services) or 'none'}"
            )
        if not request_is_authorized(service, request):
            raise Unauthorized(
                f"service {service_id!r} requires an API key",
                "send the key as HTTP Basic user name (empty password) or as 'Authorization: Bearer <key>'",
            )
        return service

    def _endpoint(self, request: Request, service_id: str, endpoint_id: str) -> EndpointRuntime:
        service = self._service(service_id, request)
        runtime = service.endpoints.get(endpoint_id)
        if runtime is None or runtime.spec.trigger is not None:  # triggers are fired, not called
            raise NotFound(
                f"unknown endpoint {service_id}/{endpoint_id}",
                f"endpoints of {service_id}: {', '.join(service.endpoints) or 'none'}",
            )
        return runtime

    def run(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        runtime = self._endpoint(request, service_id, endpoint_id)
        raw = read_body(request, self.emulator.max_body_bytes)
        arguments = runtime.spec.parameters.bind(parse_body(raw))
        # The pipeline parses the body again: pass it on as sent when that parse is sure to agree.
        payload = raw if raw[:1] == b"{" else json.dumps(arguments).encode()
        return json_response(envelope(runtime.call(arguments, payload)))

    def submit(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        """Start a task: 202 ``{"taskId"}``; it runs through the endpoint's pool, its state is kept."""
        runtime = self._endpoint(request, service_id, endpoint_id)
        arguments = runtime.spec.parameters.bind(parse_body(read_body(request, self.emulator.max_body_bytes)))
        task = self._runner().submit(runtime, arguments)
        return json_response({"taskId": task["taskId"]}, 202)

    def task(self, request: Request, task_id: str) -> Response:
        """A task's state (GET), or cancel it (DELETE: a queued task leaves the queue, a running one is killed)."""
        runner = self._runner()
        task = runner.store.get(task_id)
        if task is None:
            raise NotFound(f"unknown task {task_id!r}")
        self._service(task["serviceId"], request)  # the service's API key guards its tasks
        if request.method == "DELETE":
            task = runner.cancel(task_id) or task
        return json_response(task)

    def list_tasks(self, request: Request) -> Response:
        """Tasks, oldest first, filtered by ``serviceId``, ``endpointId`` and ``status`` query parameters."""
        filters = {key: request.args.get(key, "") for key in ("serviceId", "endpointId", "status")}
        if filters["serviceId"]:
            self._service(filters["serviceId"], request)
        visible = [
            task
            for task in self._runner().store.list(**filters)
            if task["serviceId"] in self.emulator.services
            and request_is_authorized(self.emulator.services[task["serviceId"]], request)
        ]
        return json_response({"tasks": visible})

    def _runner(self) -> TaskRunner:
        runner = self.emulator.tasks
        if runner is None:
            raise NotFound("tasks are not available: the emulator is not started")
        return runner

    def invoke(self, request: Request, function_name: str) -> Response:
        """AWS Lambda's Invoke API, so ``boto3.client("lambda", endpoint_url=...)`` works against the emulator.

        ``RequestResponse`` runs the endpoint without queueing (a busy pool is a 429
        ``TooManyRequestsException``, as Lambda throttles); ``Event`` answers 202 and runs it through the
        pool's queue; ``DryRun`` answers 204. A failed call is a 200 with ``X-Amz-Function-Error: Unhandled``.
        """
        name = unquote(function_name).rsplit(":function:", 1)[-1].split(":", 1)[0]
        runtime = self.emulator.lambda_functions.get(name)
        if runtime is None:
            return lambda_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            return lambda_error(400, "InvalidParameterValueException", f"invalid invocation type {invocation_type}")
        try:
            raw = read_body(request, self.emulator.max_body_bytes)
        except PayloadTooLarge as error:
            return lambda_error(413, "RequestTooLargeException", error.message)
        except BadRequest as error:
            return lambda_error(400, "InvalidRequestContentException", error.message)
        try:
            payload = parse_body(raw)
        except BadRequest as error:
            return lambda_error(400, "InvalidRequestContentException", error.message)
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if invocation_type == "DryRun":
            return Response(status=204, headers=headers)
        if invocation_type == "Event":
            threading.Thread(target=self._run_event, args=(runtime, payload), daemon=True).start()
            return Response(status=202, headers=headers)
        try:
            result = runtime.call(lambda_arguments(runtime, payload), may_queue=False)
        except QueueFull:
            return lambda_error(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
            )
        except LambdapoolError as error:
            body = {
                "errorMessage": error.message,
                "errorType": error.type_name(),
                "stackTrace": error.detailed_message.splitlines(),
            }
            return json_response(body, 200, {**headers, "X-Amz-Function-Error": "Unhandled"})
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(report_line(runtime, result).encode()).decode()
        return json_response(result.result, 200, headers)

    @staticmethod
    def _run_event(runtime: EndpointRuntime, payload: dict[str, Any]) -> None:
        """Run an asynchronous invocation; like Lambda, its result goes nowhere and its failure is logged."""
        try:
            runtime.call(lambda_arguments(runtime, payload))
        except LambdapoolError as error:
            log.warning(
                "asynchronous invocation of %s failed: %s: %s",
                runtime.spec.lambda_name,
                error.type_name(),
                error.message,
            )

    def fire(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        """Fire a scheduled endpoint now, through its pool, and answer with the run envelope (or its error)."""
        service = self.emulator.services.get(service_id)
        runtime = service.endpoints.get(endpoint_id) if service is not None else None
        trigger = runtime.spec.trigger if runtime is not None else None
        if runtime is None or trigger is None or trigger.kind != "schedule":
            raise NotFound(f"no scheduled endpoint {service_id}/{endpoint_id}")
        event = self.emulator.scheduled_event(runtime, datetime.datetime.now(datetime.timezone.utc))
        try:
            result = runtime.call(event)
        except LambdapoolError as error:
            runtime.stats.event_failed(error)
            raise
        runtime.stats.count("eventsDelivered")
        return json_response(envelope(result))

    def aws(self, request: Request) -> Response:
        """The local AWS the emulator runs: ``{"endpointUrl": ...}`` (null with ``--aws real`` or ``none``)."""
        return json_response({"endpointUrl": self.emulator.aws.endpoint_url, "mode": self.emulator.aws.mode})

    def status(self, request: Request) -> Response:
        return json_response(self.emulator.status())

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
