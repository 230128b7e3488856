"""The host's side of the Chalice app's own routes: which paths they serve, and the API handler's settings.

Chalice deploys every route of an app in one Lambda function, the API handler (``api_handler``, deployed as
``{app}-{stage}``), with its own settings in ``.chalice/config.json``. The emulator gives it a pool like an
endpoint's, whose pipelines serve the routes (:mod:`..pipelines._routes`); API Gateway's side is
:mod:`..surfaces._api_gateway`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..._model import EndpointSpec, Pool
from ..pipelines._config import API_HANDLER
from ..pipelines._routes import AppRoutes


class RouteTable:
    """Which request paths an app's routes serve (Chalice's own matcher: ``/items/{id}`` matches
    ``/items/3``)."""

    @classmethod
    def of(cls, app_routes: AppRoutes) -> RouteTable:
        return cls(path for path, _ in app_routes.routes)

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
