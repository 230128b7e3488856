"""What a pipeline process is started with: its mode and its configuration, which crosses to the fork server
as JSON."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any


class PipelineMode(str, enum.Enum):
    """What a pipeline process does: serve one of the app's endpoints, serve the app's own routes (its API
    handler), report the project's declarations and exit, or serve a handler named by its import path (code
    that is not the app's, such as a plug-in surface's: see :func:`handler_path`)."""

    SERVE = "serve"
    ROUTES = "routes"
    DESCRIBE = "describe"
    HANDLER = "handler"


def handler_path(factory: Callable[..., Any]) -> str:
    """``module:name`` of a handler factory, for :attr:`PipelineConfig.handler`.

    In a :attr:`PipelineMode.HANDLER` pipeline, the factory is imported from there and called with
    :attr:`PipelineConfig.handler_options` as keyword arguments (its init: the cold start); it returns the
    ``handle(payload, context, lambda_event) -> bytes`` that runs each call, and may raise to fail the init.
    It must live in a module that imports nothing host-side: it runs in the pipeline."""
    return f"{factory.__module__}:{factory.__qualname__}"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline process is started with."""

    mode: PipelineMode
    project_dir: str
    service_id: str = ""
    endpoint_id: str = ""
    pipeline_id: str = ""
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cold_start_delay_ms: int = 0
    #: Where ``app.py`` and ``chalicelib/`` are imported from: a snapshot of the project's code (so that a
    #: version keeps serving, new pipelines included, while the files change), else the project itself.
    code_dir: str = ""
    #: The pipeline's private ``/tmp`` (``TMPDIR``; empty: none), which the fork server removes if the
    #: emulator dies before it could.
    tmp_dir: str = ""
    #: The handler factory of a :attr:`PipelineMode.HANDLER` pipeline (:func:`handler_path`), and its options.
    handler: str = ""
    handler_options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """``demo/add#1``: how the console and ``ps`` name the pipeline ``demo-add-1`` (``api_handler#1``)."""
        return pipeline_name(self.service_id, self.endpoint_id, self.pipeline_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "projectDir": self.project_dir,
            "codeDir": self.code_dir,
            "tmpDir": self.tmp_dir,
            "handler": self.handler,
            "handlerOptions": dict(self.handler_options),
            "serviceId": self.service_id,
            "endpointId": self.endpoint_id,
            "pipelineId": self.pipeline_id,
            "environment": dict(self.environment),
            "coldStartDelayMs": self.cold_start_delay_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineConfig:
        return cls(
            mode=PipelineMode(data["mode"]),
            project_dir=data["projectDir"],
            service_id=data.get("serviceId", ""),
            endpoint_id=data.get("endpointId", ""),
            pipeline_id=data.get("pipelineId", ""),
            environment=dict(data.get("environment", {})),
            cold_start_delay_ms=int(data.get("coldStartDelayMs", 0)),
            code_dir=str(data.get("codeDir", "")),
            tmp_dir=str(data.get("tmpDir", "")),
            handler=str(data.get("handler", "")),
            handler_options=dict(data.get("handlerOptions", {})),
        )


#: Chalice's name for the function that serves an app's routes (deployed as ``{app}-{stage}``).
API_HANDLER = "api_handler"


def pipeline_name(service_id: str, endpoint_id: str, pipeline_id: str) -> str:
    """``demo/add#1`` for the pipeline ``demo-add-1`` of endpoint ``demo/add``; ``api_handler#1`` for one of
    the app's API handler: how the console prefixes its output, names it in the access log, and ``ps`` shows it."""
    number = pipeline_id.rsplit("-", 1)[-1]
    where = API_HANDLER if endpoint_id == API_HANDLER else f"{service_id}/{endpoint_id}"
    return f"{where}#{number}"
