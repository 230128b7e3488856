"""The pipeline's side of the Chalice app's own routes: finding the app, describing its routes, and serving
requests through Chalice's local gateway.

Chalice deploys every route of an app in one Lambda function, the API handler (``api_handler``, deployed as
``{app}-{stage}``). Its pipelines import ``app.py`` and run each request through Chalice's own local gateway
(:class:`chalice.local.LocalGateway`: route matching, the proxy event, CORS preflights, authorizers as far as
``chalice local`` supports them, binary types), then the app's handler. So user code, authorizers included,
runs in pipelines only. ``chalice.local`` and ``chalice.config`` are imported by a routes pipeline alone, when
it starts: the fork server never loads them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..._gateway import CHALICE_BINARY_TYPES
from ..._invocation import InvocationContext
from ._config import API_HANDLER

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
