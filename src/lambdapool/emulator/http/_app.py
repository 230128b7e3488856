"""The emulator's HTTP surface (DESIGN.md section 2) as a Werkzeug WSGI application.

:class:`EmulatorApp` serves whatever :class:`Host` it is given: the running
:class:`~lambdapool.emulator.Emulator`, or, in tests, pools over fake pipelines.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from ..._errors import BadRequest, LambdapoolError, MethodNotAllowed, NotFound
from ..._gateway import check_event, check_response
from ..._invocation import parse_body
from ..._limits import ASYNC_PAYLOAD_LIMIT_BYTES
from ..._names import ID_PATTERN
from ..._tasks import TaskState
from ..pipelines._config import pipeline_name
from ..pool._calls import Superseded
from ..pool._metrics import EmulatorCollector
from ..pool._runtime import EndpointRuntime
from ..project._catalog import Catalog
from ..surfaces._api_gateway import gateway_failure, route_request, route_response
from ..surfaces._dashboard import dashboard_file
from ..surfaces._lambda_invoke import invoke
from ..work._delivery import Deliveries, trigger_delivery
from ..work._scheduler import scheduled_event
from ..work._tasks import TaskRunner
from ._requests import error_response, json_response, read_body

log = logging.getLogger("lambdapool.http")
#: One line per request: the console's access log (``lambdapool local`` shows it).
access_log = logging.getLogger("lambdapool.access")
#: Where a view leaves, in the WSGI environ, what the access log says of the call: its ``apiContext``, or
#: the error it ended with.
CALL_INFO = "lambdapool.call"
CALL_ERROR = "lambdapool.error"


def function_listing(runtime: EndpointRuntime) -> dict[str, Any]:
    """An endpoint's definition as ``GET /__lambdapool__/functions`` lists it: its kind, description, limits,
    pool, parameters (name, annotation as written, required, default) and its calls running and queued."""
    spec = runtime.spec
    parameters = spec.parameters
    listed = []
    for name in (*parameters.required, *parameters.optional):
        entry: dict[str, Any] = {
            "name": name,
            "annotation": parameters.annotations.get(name),
            "required": name in parameters.required,
        }
        if name in parameters.defaults:
            entry["default"] = parameters.defaults[name]
        listed.append(entry)
    occupancy = runtime.occupancy()
    return {
        "serviceId": spec.service_id,
        "endpointId": spec.endpoint_id,
        "kind": spec.kind,
        "description": spec.description,
        "timeoutS": spec.timeout_s,
        "memoryMb": spec.memory_mb,
        "pool": spec.pool.to_dict(),
        "parameters": listed,
        "acceptsOtherParameters": parameters.var_keyword,
        "running": occupancy.busy,
        "queued": occupancy.queued,
    }


def access_line(request: Request, response: Response, started: float) -> str:
    """``POST /public/api/v1/demo/add/run  [demo/add#1] warm  200  3.21 ms``: the request, the pipeline that
    served it (cold or warm) or the error it ended with, the status and the time taken."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    info = request.environ.get(CALL_INFO)
    error = request.environ.get(CALL_ERROR)
    if info is not None:
        name = pipeline_name(str(info.get("serviceId")), str(info.get("endpointId")), str(info.get("pipelineId", "")))
        served = f"[{name}] {'cold' if info.get('coldStart') else 'warm'}"
    elif error is not None:
        served = error.type_name()
    else:
        served = "-"
    path = request.full_path if request.query_string else request.path
    return f"{request.method} {path}  {served}  {response.status_code}  {elapsed_ms:.2f} ms"


#: Paths only the emulator serves, whatever routes the app declares.
RESERVED_PREFIXES = ("/public/api/v1/", "/__lambdapool__/", "/2015-03-31/")
#: The headers of a JSON answer, as the adapter's run route sends them.
JSON_HEADERS = {"Content-Type": "application/json"}
#: The task list's page size: by default, and at most.
TASK_PAGE_DEFAULT = 100
TASK_PAGE_MAX = 1000

View = Callable[..., Response]


class Host(Protocol):
    """What the HTTP surface serves: the endpoints, their tasks and asynchronous work, and the figures."""

    catalog: Catalog
    tasks: TaskRunner
    deliveries: Deliveries
    max_body_bytes: int
    #: API Gateway's integration timeout: a route's caller is answered 504 past it.
    gateway_timeout_s: float

    def aws_address(self) -> dict[str, Any]:
        """``{"endpointUrl", "mode"}`` of the AWS the pipelines use."""
        ...

    def status(self) -> dict[str, Any]:
        """The body of ``GET /__lambdapool__/status``."""
        ...


@dataclasses.dataclass(frozen=True)
class Route:
    """A path pattern (its groups are the view's keyword arguments), its methods and its view.

    Path parameters only ever match ids. A regex table rather than ``werkzeug.routing.Map``: matching it
    costs about a microsecond, the Map's matcher about forty, and the run route is the emulator's hot path.
    """

    pattern: re.Pattern[str]
    methods: frozenset[str]
    view: View

    @classmethod
    def of(cls, pattern: str, methods: Iterable[str], view: View) -> Route:
        return cls(re.compile(pattern + "/?"), frozenset(methods), view)


def match_route(routes: Iterable[Route], method: str, path: str) -> tuple[View, dict[str, str]]:
    """The view and path parameters for a request; raises :class:`NotFound` or :class:`MethodNotAllowed`."""
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if method not in route.methods:
            raise MethodNotAllowed(method, path, route.methods)
        return route.view, found.groupdict()
    raise NotFound(f"no route {method} {path}")


class EmulatorApp:
    """The WSGI application serving one :class:`Host`."""

    def __init__(self, host: Host):
        self.host = host
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EmulatorCollector(lambda: host.catalog.runtimes()))  # the catalog of now
        endpoint = rf"/(?P<service_id>{ID_PATTERN})/(?P<endpoint_id>{ID_PATTERN})"
        self.routes: tuple[Route, ...] = (
            Route.of(rf"/public/api/v1{endpoint}/run", {"POST"}, self.run),
            Route.of(rf"/public/api/v1{endpoint}/submit", {"POST"}, self.submit),
            Route.of(rf"/public/api/v1/tasks/(?P<task_id>{ID_PATTERN})", {"GET", "DELETE"}, self.task),
            Route.of(r"/public/api/v1/tasks", {"GET", "DELETE"}, self.list_tasks),
            Route.of(r"/__lambdapool__/functions", {"GET"}, self.functions),
            Route.of(r"/2015-03-31/functions/(?P<function_name>[A-Za-z0-9_:.%$-]+)/invocations", {"POST"}, self.invoke),
            Route.of(r"/__lambdapool__/status", {"GET"}, self.status),
            Route.of(r"/__lambdapool__/", {"GET"}, self.dashboard),
            Route.of(r"/__lambdapool__/dashboard/(?P<name>[a-z]+\.(?:html|css|js))", {"GET"}, self.dashboard_file),
            Route.of(rf"/__lambdapool__/schedules{endpoint}/fire", {"POST"}, self.fire),
            Route.of(r"/__lambdapool__/aws", {"GET"}, self.aws),
            Route.of(r"/metrics", {"GET"}, self.metrics),
            Route.of(r"/__lambdapool__/metrics", {"GET"}, self.metrics),  # where an app's own /metrics shadows it
        )
        if getattr(host, "tabpy_token", None) is not None:  # the emulator (not a test's pools): TabPy's API too
            from ..tabpy._surface import TabPyViews

            tabpy_routes = TabPyViews(host).routes()  # type: ignore[arg-type]
            self.routes += tuple(Route.of(pattern, methods, view) for pattern, methods, view in tabpy_routes)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.perf_counter()
        request = Request(environ)
        response = self.dispatch(request)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(access_line(request, response, started))
            error = environ.get(CALL_ERROR)
            if error is not None and error.status >= 500:  # the function's or its pipeline's failure
                access_log.error("%s\n%s", error.message, error.detailed_message.rstrip())
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """The response to ``request``: its view's, or an error envelope."""
        try:
            if self._app_serves(request.path):
                return self.app_route(request)
            try:
                view, arguments = match_route(self.routes, request.method, request.path)
            except (NotFound, MethodNotAllowed):
                if request.method == "GET" and request.path == "/__lambdapool__":
                    return redirect("/__lambdapool__/")
                if self.host.catalog.api_handler is None or request.path.startswith(RESERVED_PREFIXES):
                    if request.method == "GET" and request.path == "/":  # no app route there: the dashboard
                        return redirect("/__lambdapool__/")
                    raise
                return self.app_route(request)  # Chalice's gateway answers what API Gateway would (403)
            return view(request, **arguments)
        except LambdapoolError as error:
            request.environ[CALL_ERROR] = error
            return error_response(error)
        except Exception:
            log.exception("internal error answering %s %s", request.method, request.path)
            body = {"errorType": "InternalError", "message": "the emulator failed", "detailedMessage": "see its log"}
            return json_response(body, 500)

    def _app_serves(self, path: str) -> bool:
        """Whether one of the app's own routes serves ``path``: those win over the emulator's paths outside
        its reserved prefixes (``/metrics``), as ``chalice local`` would serve them."""
        catalog = self.host.catalog
        return (
            catalog.api_handler is not None
            and not path.startswith(RESERVED_PREFIXES)
            and catalog.route_table.serves(path)
        )

    # -- views ----------------------------------------------------------------------------------------

    def app_route(self, request: Request) -> Response:
        """A request to the Chalice app's own routes, served by a pipeline of its API handler through
        Chalice's local gateway, behind what API Gateway does (its timeout, its limits, its failures)."""
        catalog = self.host.catalog
        runtime = catalog.api_handler
        assert runtime is not None
        body = read_body(request, self.host.max_body_bytes)
        query = request.query_string.decode("latin-1")
        try:
            check_event(
                request.method,
                request.path,
                request.headers,
                body,
                query=query,
                binary_types=catalog.app_routes.binary_types,
            )
            payload = route_request(request, body)
            try:
                result = runtime.call({}, payload, give_up_after_s=self.host.gateway_timeout_s)
            except Superseded:  # reloaded as the request arrived: the new version serves it
                if self.host.catalog.api_handler is None:
                    raise NotFound(f"no route {request.method} {request.path}") from None
                result = self.host.catalog.api_handler.call({}, payload, give_up_after_s=self.host.gateway_timeout_s)
        except NotFound:
            raise
        except LambdapoolError as error:
            request.environ[CALL_ERROR] = error
            return gateway_failure(error)
        request.environ[CALL_INFO] = result.api_context
        return route_response(result.result)

    def run(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        """Call and wait: 200 with the envelope, or the error."""
        authorization = request.headers.get("Authorization")
        runtime = self.host.catalog.callable_endpoint(service_id, endpoint_id, authorization)
        raw = read_body(request, self.host.max_body_bytes)
        check_event(request.method, request.path, request.headers, raw, query=request.query_string.decode("latin-1"))
        arguments = runtime.spec.parameters.bind(parse_body(raw))
        # The pipeline parses the body again: pass it on as sent when that parse is sure to agree.
        payload = raw if raw[:1] == b"{" else None
        try:
            result = runtime.call(arguments, payload, give_up_after_s=self.host.gateway_timeout_s)
        except Superseded:  # reloaded as the call arrived: the new version serves it
            runtime = self.host.catalog.callable_endpoint(service_id, endpoint_id, authorization)
            arguments = runtime.spec.parameters.bind(parse_body(raw))
            result = runtime.call(arguments, payload, give_up_after_s=self.host.gateway_timeout_s)
        request.environ[CALL_INFO] = result.api_context
        envelope = result.envelope()
        check_response(200, JSON_HEADERS, envelope)
        return json_response(envelope)

    def submit(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        """Start a task: 202 ``{"taskId"}``; it runs through the endpoint's pool, its state is kept."""
        runtime = self.host.catalog.callable_endpoint(service_id, endpoint_id, request.headers.get("Authorization"))
        limit = min(self.host.max_body_bytes, ASYNC_PAYLOAD_LIMIT_BYTES)  # a task is an asynchronous invocation
        arguments = runtime.spec.parameters.bind(parse_body(read_body(request, limit, asynchronous=True)))
        record = self.host.tasks.submit(runtime, arguments)
        return json_response({"taskId": record.task_id}, 202)

    def task(self, request: Request, task_id: str) -> Response:
        """A task's state (GET), or cancel it (DELETE: a queued task leaves the queue, a running one is killed)."""
        tasks = self.host.tasks
        record = tasks.store.get(task_id)
        if record is None:
            raise NotFound.task(task_id)
        self.host.catalog.service(record.service_id, request.headers.get("Authorization"))  # its key guards it
        if request.method == "DELETE":
            record = tasks.cancel(task_id) or record
        body = json.dumps(record.to_json(), separators=(",", ":")).encode()  # as the deployed route encodes it
        check_response(200, JSON_HEADERS, body)  # a large result can make it too big for API Gateway
        return json_response(body)

    def functions(self, request: Request) -> Response:
        """Every endpoint with its definition and how many of its calls run and wait now (restful-functions'
        listing): ``{"functions": [...]}`` (see :func:`function_listing`)."""
        catalog = self.host.catalog
        listed = [
            function_listing(runtime) for service in catalog.services.values() for runtime in service.endpoints.values()
        ]
        return json_response({"functions": listed})

    def terminate_tasks(self, request: Request) -> Response:
        """Terminate every queued and running task of ``serviceId``/``endpointId`` (restful-functions'
        "terminate function"): ``{"serviceId", "endpointId", "terminated": [taskId, ...]}``."""
        service_id, endpoint_id = request.args.get("serviceId", ""), request.args.get("endpointId", "")
        if not service_id or not endpoint_id:
            raise BadRequest("terminating tasks needs both serviceId and endpointId query parameters")
        self.host.catalog.callable_endpoint(service_id, endpoint_id, request.headers.get("Authorization"))
        tasks = self.host.tasks
        live = [record for record in tasks.store.list(service_id, endpoint_id, None) if not record.status.is_final]
        for record in live:
            tasks.cancel(record.task_id)
        ids = [record.task_id for record in live]
        return json_response({"serviceId": service_id, "endpointId": endpoint_id, "terminated": ids})

    def list_tasks(self, request: Request) -> Response:
        """Tasks, oldest first, filtered by ``serviceId``, ``endpointId`` and ``status`` query parameters: at
        most ``limit`` (default 100, at most 1000) summaries (no ``response``: fetch a task for it) and a
        ``nextToken`` to pass back for the next page (``null`` on the last). ``DELETE`` terminates an
        endpoint's tasks (:meth:`terminate_tasks`)."""
        if request.method == "DELETE":
            return self.terminate_tasks(request)
        limit_text = request.args.get("limit", str(TASK_PAGE_DEFAULT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= TASK_PAGE_MAX:
            raise BadRequest(f"limit must be a whole number from 1 to {TASK_PAGE_MAX}, got {limit_text[:20]!r}")
        after = request.args.get("nextToken", "")
        catalog, authorization = self.host.catalog, request.headers.get("Authorization")
        service_id = request.args.get("serviceId", "")
        if service_id:
            catalog.service(service_id, authorization)
        status = request.args.get("status", "")
        if status and status not in {state.value for state in TaskState}:
            return json_response({"tasks": [], "nextToken": None})  # no task is ever in an unknown state
        records = self.host.tasks.store.list(
            service_id, request.args.get("endpointId", ""), TaskState(status) if status else None
        )
        visible = [
            record
            for record in records
            if record.service_id in catalog.services
            and catalog.services[record.service_id].authorized(authorization)
            and (not after or f"{record.submitted_at}|{record.task_id}" > after)
        ]
        page = visible[: int(limit_text)]
        more = len(visible) > len(page)
        return json_response(
            {
                "tasks": [record.to_json(with_response=False) for record in page],
                "nextToken": f"{page[-1].submitted_at}|{page[-1].task_id}" if more else None,
            }
        )

    def invoke(self, request: Request, function_name: str) -> Response:
        """AWS Lambda's Invoke API (see :mod:`lambdapool.emulator.surfaces._lambda_invoke`)."""
        return invoke(self.host, request, function_name)

    def fire(self, request: Request, service_id: str, endpoint_id: str) -> Response:
        """Fire a scheduled endpoint now, through its pool, and answer with the run envelope (or its error)."""
        catalog = self.host.catalog
        runtime = catalog.scheduled_endpoint(service_id, endpoint_id, request.headers.get("Authorization"))
        now = datetime.datetime.now(datetime.timezone.utc)
        event = scheduled_event(catalog.deployed_name(runtime.spec.lambda_name), now, catalog.region)
        delivery = trigger_delivery(runtime, event)
        try:
            result = runtime.call(delivery.arguments)
        except LambdapoolError as error:
            delivery.on_failure(error)
            raise
        delivery.on_success(result)
        return json_response(result.envelope())

    def aws(self, request: Request) -> Response:
        """The local AWS the emulator runs: ``{"endpointUrl": ...}`` (null with ``--aws real`` or ``none``)."""
        return json_response(self.host.aws_address())

    def dashboard(self, request: Request) -> Response:
        """The dashboard page (``/__lambdapool__`` and, for an app with no routes, ``/`` lead to it)."""
        if not request.path.endswith("/"):
            return redirect("/__lambdapool__/")
        return dashboard_file("index.html")

    def dashboard_file(self, request: Request, name: str) -> Response:
        return dashboard_file(name)

    def status(self, request: Request) -> Response:
        return json_response(self.host.status())

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
