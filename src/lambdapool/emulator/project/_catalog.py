"""What the emulator serves: each service with its endpoints' runtimes, found by id or by Lambda name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..._errors import NotFound, Unauthorized
from ..._invocation import DEFAULT_REGION
from ..._keys import is_authorized
from ..._model import EndpointSpec, ServiceSpec
from ..._triggers import ScheduleTrigger
from ..pipelines._routes import AppRoutes
from ..pool._runtime import EndpointRuntime
from ._app_routes import RouteTable


class ServedService:
    """A served service: its description and its endpoints' runtimes."""

    def __init__(self, spec: ServiceSpec, endpoints: dict[str, EndpointRuntime]):
        self.spec = spec
        self.endpoints = endpoints

    @property
    def service_id(self) -> str:
        return self.spec.service_id

    @property
    def api_keys(self) -> tuple[str, ...]:
        return self.spec.api_keys

    def authorized(self, authorization: str | None) -> bool:
        """Whether ``authorization`` lets its caller use the service (one of its API keys, if it has some)."""
        return is_authorized(self.api_keys, authorization)

    def unauthorized(self) -> Unauthorized:
        """The error a caller that is not :meth:`authorized` gets."""
        return Unauthorized.for_service(self.service_id)


class Catalog:
    """The served services, each endpoint with a runtime made by ``runtime_for``.

    ``deployed_name`` gives the name Chalice deploys a function under (``{app}-{stage}-{name}``): the Lambda
    Invoke API finds an endpoint by that name, by its bare ``{service}-{endpoint}`` name or by an ARN.

    ``app_routes`` are the Chalice app's own routes; with some, ``api_handler`` (the spec of the function
    that serves them) gets a runtime too, :attr:`api_handler`.

    ``shared`` services are served with the app's but are not the app's (TabPy's deployed functions): their
    runtimes are owned elsewhere and outlive the catalog (see :meth:`app_runtimes`).
    """

    def __init__(
        self,
        services: Iterable[ServiceSpec],
        runtime_for: Callable[[EndpointSpec], EndpointRuntime],
        deployed_name: Callable[[str], str] = lambda name: name,
        qualifiers: Iterable[str] = (),
        region: str = DEFAULT_REGION,
        app_routes: AppRoutes | None = None,
        api_handler: EndpointSpec | None = None,
        shared: Iterable[ServedService] = (),
    ):
        self.deployed_name = deployed_name
        #: The region the functions run in (what their ARNs and events name).
        self.region = region
        #: The versions and aliases a function may be invoked under: ``$LATEST`` and ``qualifiers`` (the
        #: alias a stage's run routes use when it opts in to provisioned concurrency).
        self.qualifiers = frozenset({"$LATEST", *qualifiers})
        self.services: dict[str, ServedService] = {}
        self._functions: dict[str, EndpointRuntime] = {}
        for spec in services:
            endpoints = {endpoint.endpoint_id: runtime_for(endpoint) for endpoint in spec.endpoints}
            self.services[spec.service_id] = ServedService(spec, endpoints)
            for runtime in endpoints.values():
                if not runtime.spec.inline:  # an inline endpoint has no Lambda function of its own on AWS
                    self._name(runtime)
        for served in shared:
            self.services.setdefault(served.service_id, served)
        self._shared = frozenset(served.service_id for served in shared)
        #: The app's own routes, and which paths they serve.
        self.app_routes = app_routes or AppRoutes()
        self.route_table = RouteTable.of(self.app_routes)
        #: The runtime of the function that serves the app's routes (when it has some).
        self.api_handler: EndpointRuntime | None = None
        if api_handler is not None and self.app_routes.routes:
            self.api_handler = runtime_for(api_handler)
            self._name(self.api_handler)

    def _name(self, runtime: EndpointRuntime) -> None:
        for name in (self.deployed_name(runtime.spec.lambda_name), runtime.spec.lambda_name):
            self._functions.setdefault(name, runtime)

    def runtimes(self) -> Iterator[EndpointRuntime]:
        """Every endpoint's runtime, service by service, in declaration order, then the API handler's."""
        for service in list(self.services.values()):
            yield from list(service.endpoints.values())
        if self.api_handler is not None:
            yield self.api_handler

    def app_runtimes(self) -> Iterator[EndpointRuntime]:
        """The runtimes of the app's endpoints and routes: those the catalog owns (not the shared services')."""
        for service in list(self.services.values()):
            if service.service_id not in self._shared:
                yield from list(service.endpoints.values())
        if self.api_handler is not None:
            yield self.api_handler

    def successor(self, runtime: EndpointRuntime) -> EndpointRuntime | None:
        """The runtime here that serves what ``runtime`` (of a catalog before a reload) served, if any."""
        spec = runtime.spec
        if spec.kind == "api":
            return self.api_handler
        service = self.services.get(spec.service_id)
        return service.endpoints.get(spec.endpoint_id) if service is not None else None

    def app_status(self) -> dict[str, Any] | None:
        """The app's own routes and the status of the function serving them (``None`` without routes)."""
        if self.api_handler is None:
            return None
        return {"routes": self.app_routes.to_json()["routes"], "apiHandler": self.api_handler.status()}

    def service(self, service_id: str, authorization: str | None) -> ServedService:
        """The service, if ``authorization`` carries one of its keys; raises :class:`NotFound` or
        :class:`~lambdapool._errors.Unauthorized`."""
        service = self.services.get(service_id)
        if service is None:
            raise NotFound(f"unknown service {service_id!r}", f"services: {', '.join(self.services) or 'none'}")
        if not service.authorized(authorization):
            raise service.unauthorized()
        return service

    def callable_endpoint(self, service_id: str, endpoint_id: str, authorization: str | None) -> EndpointRuntime:
        """A function endpoint (triggers are fired, not called); raises as :meth:`service`."""
        service = self.service(service_id, authorization)
        runtime = service.endpoints.get(endpoint_id)
        if runtime is None or runtime.spec.trigger is not None:
            raise NotFound(
                f"unknown endpoint {service_id}/{endpoint_id}",
                f"endpoints of {service_id}: {', '.join(service.endpoints) or 'none'}",
            )
        return runtime

    def scheduled_endpoint(self, service_id: str, endpoint_id: str, authorization: str | None) -> EndpointRuntime:
        """A scheduled endpoint, if ``authorization`` carries one of its service's keys; raises as
        :meth:`service`."""
        runtime = self.service(service_id, authorization).endpoints.get(endpoint_id)
        trigger = runtime.spec.trigger if runtime is not None else None
        if runtime is None or not isinstance(trigger, ScheduleTrigger):
            raise NotFound(f"no scheduled endpoint {service_id}/{endpoint_id}")
        return runtime

    def function(self, name: str) -> EndpointRuntime | None:
        """The endpoint whose Lambda function is ``name`` (deployed or bare)."""
        return self._functions.get(name)

    def status(self, extra: Callable[[EndpointRuntime], dict[str, Any]] = lambda runtime: {}) -> dict[str, Any]:
        """Every service with its endpoints' status (and ``extra(runtime)`` in each)."""
        return {
            service.service_id: {
                "description": service.spec.description,
                "authenticated": not service.authorized(None),
                "endpoints": {
                    name: {**runtime.status(), **extra(runtime)} for name, runtime in service.endpoints.items()
                },
            }
            for service in self.services.values()
        }

    def close(self) -> None:
        """Close the app's runtimes (their pipelines end, their waiting calls fail)."""
        for runtime in self.app_runtimes():
            runtime.close()
