"""The Chalice adapter: ``mount(app, *services)`` registers function endpoints on a Chalice app.

Runtime code: imported inside Lambda packages, so it imports only the model and ``chalice.app``.
Under ``chalice local`` and ``chalice.test.Client`` the run routes call the endpoint in process.
"""

from __future__ import annotations

import json
import time
import uuid

from chalice.app import Chalice, Response

from ._errors import LambdapoolError, PayloadTooLarge
from ._model import Endpoint, InvocationContext, Service, call_endpoint, parse_body, record_mount

__all__ = ["mount", "run_path"]

MAX_BODY_BYTES = 6 * 2**20
_ANY_CONTENT = [
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
]


def run_path(service_id: str, endpoint_id: str) -> str:
    """The run route of an endpoint: ``/public/api/v1/{service}/{endpoint}/run``."""
    return f"/public/api/v1/{service_id}/{endpoint_id}/run"


def mount(app: Chalice, *services: Service) -> None:
    """Register every endpoint of ``services`` on ``app`` as a ``POST`` run route.

    Raises ``ValueError`` if a service is mounted twice under the same id with different objects.
    """
    record_mount(app, services)
    for service in services:
        for endpoint in service.endpoints.values():
            _register_run_route(app, endpoint)


def _register_run_route(app: Chalice, endpoint: Endpoint) -> None:
    state = {"cold": True}

    def run_view() -> Response:
        request = app.current_request
        started = time.perf_counter()
        cold, state["cold"] = state["cold"], False
        try:
            raw = request.raw_body if request is not None else b""
            if len(raw) > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"request body is over the {MAX_BODY_BYTES}-byte limit")
            arguments = endpoint.parameters.bind(parse_body(raw))
            context = InvocationContext(
                request_id=uuid.uuid4().hex,
                service_id=endpoint.service_id,
                endpoint_id=endpoint.endpoint_id,
                deadline=time.time() + endpoint.timeout_s,
                cold_start=cold,
                pipeline_id="in-process",
                memory_mb=endpoint.memory_mb,
            )
            executed = time.perf_counter()
            result = call_endpoint(endpoint, arguments, context)
        except LambdapoolError as error:
            headers: dict[str, str | list[str]] = {"Content-Type": "application/json", **error.headers()}
            return Response(body=error.to_json().decode(), status_code=error.status, headers=headers)
        finished = time.perf_counter()
        body = {
            "response": json.loads(result),
            "timing": {
                "wait": 0.0,
                "coldStart": 0.0,
                "execution": round((finished - executed) * 1000, 3),
                "total": round((finished - started) * 1000, 3),
            },
            "apiContext": {
                "serviceId": endpoint.service_id,
                "endpointId": endpoint.endpoint_id,
                "pipelineId": "in-process",
                "coldStart": cold,
            },
        }
        return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})

    run_view.__name__ = f"lambdapool_run_{endpoint.service_id}_{endpoint.endpoint_id}".replace("-", "_")
    # Any content type: the body is parsed as JSON whatever the header says (the Dataiku client sends none).
    app.route(run_path(endpoint.service_id, endpoint.endpoint_id), methods=["POST"], content_types=_ANY_CONTENT)(
        run_view
    )
