"""The Chalice app's own routes (``@app.route``), served as ``chalice local`` serves them, in the pool of the
app's API handler function.

Chalice deploys every route of an app in one Lambda function, the API handler (``api_handler``, deployed as
``{app}-{stage}``), with its own settings in ``.chalice/config.json``. The emulator gives it a pool like an
endpoint's: its pipelines import ``app.py`` and run each request through Chalice's own local gateway
(:class:`chalice.local.LocalGateway`: route matching, the proxy event, CORS preflights, authorizers as far as
``chalice local`` supports them, binary types), then the app's handler. So user code, authorizers
included, runs in pipelines only; the emulator turns the handler's response back into HTTP.

What API Gateway itself answers is answered the same way: 504 past the integration timeout, and, when the
API handler's invocation fails (a crash, a timeout, memory, a response over 6 MB, a throttle), API
Gateway's 502 or 500 ``{"message": "Internal server error"}``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from werkzeug.wrappers import Request, Response

from .._errors import LambdapoolError, QueueFull, QueueTimeout
from .._gateway import CHALICE_BINARY_TYPES, GatewayTimeout
from .._invocation import InvocationContext
from .._model import EndpointSpec, Pool

log = logging.getLogger("lambdapool.routes")

#: Chalice's name for the function that serves an app's routes (deployed as ``{app}-{stage}``).
API_HANDLER = "api_handler"
#: The prefix of the handlers ``lambdapool.chalice.mount`` registers (run, submit and task routes, and the
#: endpoints' own functions): the emulator serves those itself.
_LAMBDAPOOL_HANDLER = "lambdapool_"
#: The Lambda Python runtime's JSON (awslambdaric): non-ASCII escaped up to python3.11.
_RUNTIME_ENSURE_ASCII = sys.version_info < (3, 12)


@dataclasses.dataclass(frozen=True)
class AppRoutes:
    """What the emulator knows of an app's own routes: each path pattern (``/items/{id}``) with its methods,
    the API's binary types, and the registrations ``chalice local`` does not run either (listed in the
    banner as not emulated)."""

    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    binary_types: tuple[str, ...] = CHALICE_BINARY_TYPES
    not_emulated: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": [{"path": path, "methods": list(methods)} for path, methods in self.routes],
            "binaryTypes": list(self.binary_types),
            "notEmulated": list(self.not_emulated),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppRoutes:
        return cls(
            routes=tuple((str(route["path"]), tuple(route["methods"])) for route in data.get("routes", ())),
            binary_types=tuple(data.get("binaryTypes", CHALICE_BINARY_TYPES)),
            not_emulated=tuple(data.get("notEmulated", ())),
        )

    def matcher(self) -> RouteTable:
        return RouteTable(path for path, _ in self.routes)


class RouteTable:
    """Which request paths an app's routes serve (Chalice's own matcher: ``/items/{id}`` matches
    ``/items/3``)."""

    def __init__(self, paths: Iterable[str]):
        from chalice.local import RouteMatcher

        self.paths = list(paths)
        self._matcher = RouteMatcher(self.paths) if self.paths else None

    def __bool__(self) -> bool:
        return bool(self.paths)

    def serves(self, path: str) -> bool:
        if self._matcher is None:
            return False
        try:
            self._matcher.match_route(path)
        except ValueError:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class ApiHandlerSpec(EndpointSpec):
    """The API handler as a pool sees it: an endpoint whose Chalice function name is ``api_handler``."""

    @property
    def lambda_name(self) -> str:
        return API_HANDLER

    @property
    def where(self) -> str:
        return "the app's routes (api_handler)"

    @property
    def kind(self) -> str:
        return "api"


def api_handler_spec(app_name: str, stage: str, chalice_config: Mapping[str, Any]) -> ApiHandlerSpec:
    """The API handler's settings in ``stage``, read as Chalice reads them (``lambda_timeout``,
    ``lambda_memory_size`` and ``reserved_concurrency``, per function, per stage or top level; Chalice's
    defaults 60 s and 128 MB). With reserved concurrency, Lambda throttles past it at once: the pool is
    ``ceil`` = that, without a queue. Without, Lambda would scale out: the pool has the default ceiling and
    queue, so a local burst waits instead of failing."""
    from chalice.config import Config

    config = Config(chalice_stage=stage, function_name=API_HANDLER, config_from_disk=dict(chalice_config))
    reserved = config.reserved_concurrency
    pool = Pool(floor=1, cruise=min(2, reserved), ceil=reserved, queue=0) if reserved else Pool()
    return ApiHandlerSpec(
        service_id=app_name,
        endpoint_id=API_HANDLER,
        pool=pool,
        timeout_s=int(config.lambda_timeout or 60),
        memory_mb=int(config.lambda_memory_size or 128),
        description="the Chalice app's own routes",
    )


# -- the emulator's side: a request in, a response out ------------------------------------------------------


def route_request(request: Request, body: bytes) -> bytes:
    """What a pipeline of the API handler is sent for ``request``: its method, path with the query string,
    headers as sent and body (base64: it may be binary), as JSON."""
    path = request.full_path if request.query_string else request.path
    return json.dumps(
        {
            "method": request.method,
            "path": path,
            "headers": dict(request.headers.items()),
            "body": base64.b64encode(body).decode("ascii") if body else None,
        },
        separators=(",", ":"),
    ).encode()


def route_response(result: bytes) -> Response:
    """The HTTP response for what the API handler returned (Chalice's response dict), as ``chalice local``
    writes it: single and multi-valued headers, the body base64-decoded when so marked."""
    answer = json.loads(result)
    headers: list[tuple[str, str]] = []
    for name, value in (answer.get("headers") or {}).items():
        headers.append((name, str(value)))
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers += [(name, str(value)) for value in values]
    body = answer.get("body")
    data = b"" if body is None else base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(answer.get("statusCode", 200)))
    response.headers.clear()
    if not any(name.lower() == "content-type" for name, _ in headers) and data:
        headers.append(("Content-Type", "application/json"))
    for name, value in headers:
        response.headers.add(name, value)
    return response


def gateway_failure(error: LambdapoolError) -> Response:
    """What API Gateway answers when the API handler's invocation fails: 504 past its integration timeout,
    500 when Lambda throttled it or refused its event, 502 when the function failed (crashed, timed out,
    ran out of memory, or returned a response over the limit)."""
    if isinstance(error, GatewayTimeout):
        status, message = 504, "Endpoint request timed out"
    elif isinstance(error, (QueueFull, QueueTimeout)) or error.status == 413:
        status, message = 500, "Internal server error"
    else:
        status, message = 502, "Internal server error"
    body = json.dumps({"message": message}).encode()
    return Response(body, status=status, content_type="application/json")


# -- the pipeline's side: the app, Chalice's local gateway ----------------------------------------------------


def find_chalice_app(module: ModuleType) -> Any:
    """The Chalice app of ``app.py``: its ``app`` attribute (what Chalice deploys), else its only Chalice
    instance; ``None`` if it has none."""
    from chalice.app import Chalice

    if isinstance(getattr(module, "app", None), Chalice):
        return module.app
    apps = [value for value in vars(module).values() if isinstance(value, Chalice)]
    return apps[0] if len(apps) == 1 else None


def describe_app(app: Any) -> AppRoutes:
    """The app's own routes (not those ``mount`` registered), its binary types and what is not emulated."""

    def ours(handler_string: str) -> bool:
        return handler_string.rsplit(".", 1)[-1].startswith(_LAMBDAPOOL_HANDLER)

    routes = tuple(
        (path, tuple(methods))
        for path, methods in app.routes.items()
        if not all(entry.view_name.startswith(_LAMBDAPOOL_HANDLER) for entry in methods.values())
    )
    not_emulated = [
        f"{type(source).__name__.removesuffix('EventConfig')} handler {source.name}"
        for source in app.event_sources
        if not ours(source.handler_string)
    ]
    not_emulated += [
        f"Lambda function {function.name}"
        for function in app.pure_lambda_functions
        if not ours(function.handler_string)
    ]
    not_emulated += [f"websocket handler {route}" for route in app.websocket_handlers]
    return AppRoutes(routes=routes, binary_types=tuple(app.api.binary_types), not_emulated=tuple(not_emulated))


class RouteServer:
    """Serves requests to an app's routes inside a pipeline, through Chalice's local gateway, with the
    invocation's context as the Lambda context."""

    def __init__(self, app: Any):
        from chalice.config import Config
        from chalice.local import LocalGateway, LocalGatewayException

        class PipelineGateway(LocalGateway):
            context: Any = None

            def _generate_lambda_context(self) -> Any:
                return self.context

        self._gateway = PipelineGateway(app, Config(function_name=API_HANDLER))
        self._gateway_error = LocalGatewayException
        self._app = app

    def handle(self, payload: bytes, context: InvocationContext, lambda_event: bool) -> bytes:
        """The API handler's response (JSON, as the Lambda runtime writes it) to a request sent by
        :func:`route_request`, or, from the Invoke API (``lambda_event``), to a proxy event as is."""
        if lambda_event:
            return self._encode(self._app(json.loads(payload), context))
        request = json.loads(payload)
        body = base64.b64decode(request["body"]) if request.get("body") is not None else None
        self._gateway.context = context
        try:
            response = self._gateway.handle_request(request["method"], request["path"], request["headers"], body)
        except self._gateway_error as exc:  # API Gateway's own 403/401/500 (no route, authorizer answers)
            error_body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
            response = {"statusCode": exc.CODE, "headers": dict(exc.headers), "body": error_body}
        return self._encode(response)

    @staticmethod
    def _encode(response: Any) -> bytes:
        return json.dumps(response, ensure_ascii=_RUNTIME_ENSURE_ASCII).encode()
