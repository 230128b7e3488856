"""The local emulator: a project's endpoints, each with its pool of real pipelines, behind Werkzeug.

:class:`Emulator` is a context manager: entering it starts the fork server, reads the app's declarations
(in a short-lived pipeline, never in this process), starts every pool's ``floor`` pipelines and binds the
HTTP server; leaving it stops the server and every process it started.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from ._aws import LocalAws
from ._chalice_config import app_name, function_environment, read_chalice_config
from ._errors import LambdapoolError, QueueFull, QueueTimeout
from ._forkserver import ForkServer
from ._loader import AppLoadError, app_path
from ._model import Pool, load_pool_override
from ._runtime import EndpointRuntime, EndpointSpec
from ._scheduler import Scheduler
from ._tasks import MAX_EVENT_AGE_S, TaskRunner, TaskStore
from ._wire import ChannelClosed, recv_frame

log = logging.getLogger("lambdapool.emulator")

#: Always preloaded in the fork server: what every app.py imports.
BASE_PRELOAD = ("json", "logging", "chalice", "lambdapool", "lambdapool.chalice")


def third_party_imports(path: Path) -> list[str]:
    """Top-level modules ``app.py`` imports that live outside its project (libraries worth preloading).

    The project's own modules (``chalicelib``...) are left out: their init code must run in each pipeline.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module.split(".")[0])
    project = path.parent.resolve()
    found: list[str] = []
    for name in dict.fromkeys(names):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        origin = spec.origin if spec is not None else None
        if spec is None or (origin and Path(origin).resolve().is_relative_to(project)):
            continue
        if spec.submodule_search_locations and any(
            Path(location).resolve().is_relative_to(project) for location in spec.submodule_search_locations
        ):
            continue
        found.append(name)
    return found


def describe_project(forkserver: ForkServer, config: dict[str, Any]) -> dict[str, Any]:
    """The services ``app.py`` declares, read in a short-lived process so that no user code runs here.

    Raises :class:`~lambdapool._loader.AppLoadError` with the traceback if the app fails to load.
    """
    _pid, sock = forkserver.spawn(config)
    with sock:
        try:
            sock.settimeout(120)
            header, _ = recv_frame(sock)
        except (ChannelClosed, OSError, ValueError) as exc:
            raise AppLoadError(f"loading {config['projectDir']}/app.py killed its process ({exc})") from exc
    if header.get("op") == "init_error":
        raise AppLoadError(header["error"]["detailedMessage"].rstrip() + "\n" + header["error"]["message"])
    description: dict[str, Any] = header["description"]
    return description


def endpoint_specs(project_dir: Path, service_data: dict[str, Any]) -> list[EndpointSpec]:
    """A described service's endpoints, with the pool files of ``config/services/`` applied."""
    return [
        EndpointSpec.from_description(
            endpoint_data,
            load_pool_override(
                project_dir, service_data["serviceId"], endpoint_data["endpointId"], Pool(**endpoint_data["pool"])
            ),
        )
        for endpoint_data in service_data["endpoints"]
    ]


class ServedService:
    """A served service: its id, API keys and endpoint runtimes."""

    def __init__(self, service_id: str, description: str, api_keys: tuple[str, ...]):
        self.service_id = service_id
        self.description = description
        self.api_keys = api_keys
        self.endpoints: dict[str, EndpointRuntime] = {}


class Emulator:
    """Serve ``project_dir``'s function endpoints on ``host:port`` (``port=0`` picks a free port).

    ``cold_start_delay_ms`` adds an emulated provider overhead to every pipeline start; submitted tasks are
    kept in ``state_dir`` (default ``PROJECT_DIR/.lambdapool``); ``aws`` is ``moto`` (a local AWS on moto's
    server, whose address pipelines get), ``real`` or ``none``;
    ``supervise_interval_s`` is how often running calls are checked against ``timeout_s`` and pipelines'
    resident memory against ``memory_mb`` (a pipeline's peak memory is also checked after every call).
    Raises :class:`~lambdapool._loader.AppLoadError` from :meth:`start` if the app cannot be loaded.
    """

    def __init__(
        self,
        project_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        stage: str = "dev",
        cold_start_delay_ms: int = 0,
        supervise_interval_s: float = 0.05,
        max_body_bytes: int = 6 * 2**20,
        state_dir: str | Path | None = None,
        aws: str = "moto",
    ):
        self.project_dir = Path(project_dir).resolve()
        self.host = host
        self.port = port
        self.stage = stage
        self.cold_start_delay_ms = cold_start_delay_ms
        self.max_body_bytes = max_body_bytes
        self.state_dir = Path(state_dir) if state_dir is not None else self.project_dir / ".lambdapool"
        self.tasks: TaskRunner | None = None
        self.aws = LocalAws(aws)
        self.scheduler: Scheduler | None = None
        self.services: dict[str, ServedService] = {}
        #: Lambda function name -> endpoint, under both ``{app}-{stage}-{service}-{endpoint}`` and the bare name.
        self.lambda_functions: dict[str, EndpointRuntime] = {}
        self._supervise_interval_s = supervise_interval_s
        self._chalice_config: dict[str, Any] = {}
        self._app_name = ""
        self._forkserver: ForkServer | None = None
        self._server: BaseWSGIServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Load the project, start the pools' floor pipelines and bind the HTTP server (not yet serving)."""
        try:
            path = app_path(self.project_dir)
            self.aws.start()
            self._chalice_config = read_chalice_config(self.project_dir)
            self._app_name = app_name(self.project_dir, self._chalice_config)
            self._forkserver = ForkServer(
                preload=[*BASE_PRELOAD, *third_party_imports(path)], on_exit=self._on_pipeline_exit
            )
            self._forkserver.start()
            self._build_services(describe_project(self._forkserver, self._pipeline_config("describe")))
            self.tasks = TaskRunner(TaskStore(self.state_dir / "tasks"))
            for runtime in self.runtimes():
                runtime.load()
            self._start_triggers()
            self._watcher = threading.Thread(target=self._supervise, name="lambdapool-supervisor", daemon=True)
            self._watcher.start()
            from ._http import EmulatorApp

            self._server = make_server(self.host, self.port, EmulatorApp(self), threaded=True)
            self.port = self._server.server_port
        except BaseException:
            self.close()
            raise

    def serve_forever(self) -> None:
        """Serve HTTP until :meth:`close` (from another thread) or Ctrl-C."""
        assert self._server is not None, "call start() first"
        self._server.serve_forever(poll_interval=0.1)

    def serve_in_thread(self) -> None:
        """Serve HTTP from a background thread (what tests and the pytest plugin use)."""
        self._serve_thread = threading.Thread(target=self.serve_forever, name="lambdapool-http", daemon=True)
        self._serve_thread.start()

    def close(self) -> None:
        """Stop serving and end every pipeline and the fork server. Safe to call twice."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            if self._serve_thread is not None:
                server.shutdown()
                self._serve_thread.join()
            server.server_close()
        if self.scheduler is not None:
            self.scheduler.stop()
        for runtime in self.runtimes():
            runtime.close()
        forkserver, self._forkserver = self._forkserver, None
        if forkserver is not None:
            forkserver.stop()
        self.aws.stop()

    # -- queries --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def deployed_name(self, function_name: str) -> str:
        """The name Chalice deploys a function under: ``{app}-{stage}-{function_name}``."""
        return f"{self._app_name}-{self.stage}-{function_name}"

    def runtimes(self) -> Iterator[EndpointRuntime]:
        for service in list(self.services.values()):
            yield from list(service.endpoints.values())

    def status(self) -> dict[str, Any]:
        next_fire = self.scheduler.next_fire if self.scheduler is not None else {}
        return {
            "project": str(self.project_dir),
            "aws": {"mode": self.aws.mode, "endpointUrl": self.aws.endpoint_url},
            "nextFire": {name: when.isoformat() if when else None for name, when in next_fire.items()},
            "app": self._app_name,
            "stage": self.stage,
            "forkServerPid": self._forkserver.pid if self._forkserver is not None else None,
            "services": {
                service.service_id: {
                    "description": service.description,
                    "authenticated": bool(service.api_keys),
                    "endpoints": {name: runtime.status() for name, runtime in service.endpoints.items()},
                }
                for service in self.services.values()
            },
        }

    # -- internals ------------------------------------------------------------------------------------

    def _pipeline_config(
        self, mode: str, service_id: str = "", endpoint_id: str = "", label: str = ""
    ) -> dict[str, Any]:
        function_name = f"{service_id}-{endpoint_id}"
        environment = function_environment(self._chalice_config, self.stage, function_name) if service_id else {}
        environment.update(self.aws.environment())
        environment.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        if service_id:
            environment["AWS_LAMBDA_FUNCTION_NAME"] = self.deployed_name(function_name)
        environment["LAMBDAPOOL_STAGE"] = self.stage
        return {
            "mode": mode,
            "projectDir": str(self.project_dir),
            "serviceId": service_id,
            "endpointId": endpoint_id,
            "pipelineId": label,
            "environment": environment,
            "coldStartDelayMs": self.cold_start_delay_ms if mode == "serve" else 0,
        }

    def _build_services(self, description: dict[str, Any]) -> None:
        for service_data in description["services"]:
            service = ServedService(
                service_data["serviceId"], service_data["description"], tuple(service_data["apiKeys"])
            )
            for spec in endpoint_specs(self.project_dir, service_data):
                runtime = EndpointRuntime(spec, self._launch)
                service.endpoints[spec.endpoint_id] = runtime
                if not spec.inline:  # an inline endpoint has no Lambda function of its own on AWS
                    for name in (self.deployed_name(spec.lambda_name), spec.lambda_name):
                        self.lambda_functions.setdefault(name, runtime)
            self.services[service.service_id] = service

    # -- triggers -------------------------------------------------------------------------------------

    def trigger_runtime(self, name: str) -> EndpointRuntime:
        """The endpoint whose Lambda name (``{service}-{endpoint}``) is ``name``."""
        return self.lambda_functions[name]

    def _start_triggers(self) -> None:
        schedules, s3_triggers = [], []
        for runtime in self.runtimes():
            trigger = runtime.spec.trigger
            if trigger is not None and trigger.kind == "schedule":
                schedules.append((runtime.spec.lambda_name, trigger.expression))
            elif trigger is not None:
                visibility_s = runtime.spec.timeout_s + runtime.spec.pool.timeout_ms // 1000 + 30
                s3_triggers.append((runtime.spec.lambda_name, trigger, visibility_s))
        self.aws.wire_s3_triggers(s3_triggers, lambda name, event: self.deliver(self.trigger_runtime(name), event))
        self.scheduler = Scheduler(schedules, self._fire_on_schedule)
        self.scheduler.start()

    def scheduled_event(self, runtime: EndpointRuntime, when: dt.datetime) -> dict[str, Any]:
        """The event EventBridge sends a scheduled function (what Chalice's ``CloudWatchEvent`` parses)."""
        rule = f"{self.deployed_name(runtime.spec.lambda_name)}"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"],
            "detail": {},
        }

    def _fire_on_schedule(self, name: str, when: dt.datetime) -> None:
        runtime = self.trigger_runtime(name)
        self.deliver(runtime, self.scheduled_event(runtime, when))

    def deliver(self, runtime: EndpointRuntime, event: dict[str, Any]) -> None:
        """Run a trigger event through the endpoint's pool in the background, as Lambda runs asynchronous
        events: a full pool is retried (the event waits), a failure is counted and kept for the status."""
        threading.Thread(target=self._deliver, args=(runtime, event), daemon=True).start()

    def _deliver(self, runtime: EndpointRuntime, event: dict[str, Any]) -> None:
        attempt = 0
        started = time.monotonic()
        while not self._stopping.is_set():
            try:
                runtime.call(event)
                runtime.stats.count("eventsDelivered")
                return
            except (QueueFull, QueueTimeout) as error:
                if time.monotonic() - started > MAX_EVENT_AGE_S:
                    runtime.stats.event_failed(error)
                    return
                self._stopping.wait(min(0.05 * 2**attempt, 5.0))
                attempt += 1
            except LambdapoolError as error:
                log.warning("%s failed on an event: %s: %s", runtime.spec.lambda_name, error.type_name(), error.message)
                runtime.stats.event_failed(error)
                return

    def _launch(self, runtime: EndpointRuntime, pool_id: int) -> tuple[int, socket.socket]:
        forkserver = self._forkserver
        if forkserver is None:
            raise RuntimeError("the emulator is stopped")
        spec = runtime.spec
        label = f"{spec.lambda_name}-{pool_id}"
        return forkserver.spawn(self._pipeline_config("serve", spec.service_id, spec.endpoint_id, label))

    def _on_pipeline_exit(self, pid: int, status: int) -> None:
        for runtime in self.runtimes():
            if runtime.on_exit(pid, status):
                return

    def _supervise(self) -> None:
        while not self._stopping.wait(self._supervise_interval_s):
            now = time.monotonic()
            for runtime in self.runtimes():
                runtime.supervise(now)
