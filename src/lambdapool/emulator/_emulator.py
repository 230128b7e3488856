"""The local emulator: a project's endpoints, each with its pool of real pipelines, behind Werkzeug.

:class:`Emulator` is a context manager: entering it starts the fork server, reads the app's declarations
(in a short-lived pipeline, never in this process), starts every pool's ``floor`` pipelines and binds the
HTTP server; leaving it stops the server and every process and thread it started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import AppLoadError
from .._forward import QUALIFIER_VARIABLE
from .._invocation import region_of
from .._limits import API_GATEWAY_TIMEOUT_S, ASYNC_RETRY_DELAY_S, INIT_LIMIT_S, KEEP_WARM_S, SYNC_PAYLOAD_LIMIT_BYTES
from .._model import EndpointSpec
from .._triggers import S3Trigger, ScheduleTrigger, assert_never
from .http._app import EmulatorApp
from .http._server import ConnectionLimits, EmulatorServer
from .pipelines._config import PipelineMode
from .pipelines._forkserver import ForkServer
from .pipelines._processes import new_tmp_dir, new_tmp_root, process_running, sweep_tmp_roots
from .pool._pipeline import Pipeline
from .pool._runtime import EndpointRuntime
from .project._app_routes import api_handler_spec
from .project._catalog import Catalog, ServedService
from .project._project import (
    BASE_PRELOAD,
    Project,
    ProjectDescription,
    describe_project,
    load_buckets,
    snapshot_code,
    third_party_imports,
    unmatched_pool_files,
)
from .project._reload import Reloader, ReloadRecord
from .tabpy._auth import PasswordFile
from .tabpy._pipeline import TOKEN_VARIABLE, URL_VARIABLE
from .tabpy._service import TabPyFunctions
from .tabpy._store import SERVICE_ID as TABPY_SERVICE
from .work._aws import AwsMode, LocalAws
from .work._delivery import Deliveries, trigger_delivery
from .work._scheduler import Scheduler, scheduled_event
from .work._tasks import FileTaskStore, Retention, TaskRunner

log = logging.getLogger("lambdapool.emulator")


def _remove_code(project: Project) -> None:
    if project.code_dir is not None:
        shutil.rmtree(project.code_dir, ignore_errors=True)


def _drain_bound_s(runtime: EndpointRuntime) -> float:
    """The longest a call in ``runtime``'s pool can still take: its wait in the queue, a start (an init run
    again included) and its run."""
    spec = runtime.spec
    return spec.pool.timeout_ms / 1000 + runtime.init_limit_s + 2 * spec.timeout_s + 5


#: How long a pipeline above its pool's ``cruise`` stays idle before it is retired: a burst is over when no
#: request has come for it that long (a steady load leaves pipelines idle for moments between requests).
CRUISE_GRACE_S = 1.0


class Emulator:
    """Serve ``project_dir``'s function endpoints on ``host:port`` (``port=0`` picks a free port).

    ``cold_start_delay_ms`` adds an emulated provider overhead to every pipeline start, and each start also
    waits what a fresh interpreter spends starting and importing the libraries the fork server preloaded
    (Lambda's Init pays for them; measured as the fork server's own start), unless ``fast_cold_starts``;
    ``freeze`` stops idle pipelines between calls; a route's caller is answered API Gateway's 504 after
    ``gateway_timeout_s`` (its integration timeout), while the call goes on; init code running past
    ``init_limit_s`` (Lambda's 10 s) is run again within the first call, under ``timeout_s``; submitted
    tasks are kept in ``state_dir`` (default ``PROJECT_DIR/.lambdapool``); ``aws`` is ``moto`` (a local AWS
    on moto's server, whose address pipelines get), ``real`` or ``none``;
    ``supervise_interval_s`` is how often running calls are checked against ``timeout_s`` and pipelines'
    resident memory against ``memory_mb`` (a pipeline's peak memory is also checked after every call).
    ``pwd_file`` is a TabPy password file: TabPy's routes then need the credentials of one of its users;
    ``allow_deploy`` (which needs one) lets them deploy functions and run ``/evaluate``'s scripts.
    Raises :class:`~lambdapool._errors.AppLoadError` from :meth:`start` if the app cannot be loaded, and
    ``ValueError`` for a password file that cannot be used.
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
        max_body_bytes: int = SYNC_PAYLOAD_LIMIT_BYTES,
        state_dir: str | Path | None = None,
        aws: AwsMode | str = AwsMode.MOTO,
        connection_limits: ConnectionLimits | None = None,
        task_retention: Retention | None = None,
        async_retry_delay_s: float = ASYNC_RETRY_DELAY_S,
        keep_warm_s: float = KEEP_WARM_S,
        freeze: bool = True,
        fast_cold_starts: bool = False,
        gateway_timeout_s: float = API_GATEWAY_TIMEOUT_S,
        init_limit_s: float = INIT_LIMIT_S,
        reload: bool = False,
        allow_deploy: bool = False,
        pwd_file: str | Path | None = None,
    ):
        if allow_deploy and pwd_file is None:
            raise ValueError(
                "deploying functions and /evaluate run code sent over HTTP: --allow-deploy needs --pwd-file FILE "
                "(a TabPy password file, written by tabpy-user add), so that only its users can"
            )
        #: TabPy's users (``None``: TabPy's routes are open, and deploying is off).
        self.passwords = PasswordFile.load(pwd_file) if pwd_file is not None else None
        self.allow_deploy = allow_deploy
        #: The functions deployed with TabPy's client (from :meth:`start`).
        self.tabpy: TabPyFunctions | None = None
        #: What ``/evaluate``'s pipelines present to query deployed functions (they have no user's password).
        self.tabpy_token = secrets.token_urlsafe(32)
        self.project_dir = Path(project_dir).resolve()
        self.host = host
        self.port = port
        self.stage = stage
        self.cold_start_delay_ms = cold_start_delay_ms
        self.max_body_bytes = max_body_bytes
        self.connection_limits = connection_limits or ConnectionLimits()
        self.task_retention = task_retention or Retention()
        self.state_dir = Path(state_dir) if state_dir is not None else self.project_dir / ".lambdapool"
        self.aws = LocalAws(aws)
        self.project = Project(self.project_dir, stage)
        self.catalog = Catalog((), self._runtime_for)
        self.deliveries = Deliveries(async_retry_delay_s=async_retry_delay_s)
        self.keep_warm_s = keep_warm_s
        self.freeze = freeze
        self.fast_cold_starts = fast_cold_starts
        self.gateway_timeout_s = gateway_timeout_s
        self.init_limit_s = init_limit_s
        self.reloads = ReloadRecord(enabled=reload)
        self._reload_lock = threading.Lock()
        self._reloader: Reloader | None = None
        self._draining: list[EndpointRuntime] = []
        self._code_versions = 0
        self._code_swept = False
        #: The directory of the pipelines' ``/tmp`` directories (see :func:`new_tmp_root`), once started.
        self._tmp_root: Path | None = None
        self.tasks: TaskRunner  # from start(): its store reads the state directory
        self._task_store: FileTaskStore
        self.scheduler: Scheduler | None = None
        self._supervise_interval_s = supervise_interval_s
        self._forkserver: ForkServer | None = None
        self._server: EmulatorServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Load the project, start the pools' floor pipelines and bind the HTTP server (not yet serving)."""
        try:
            sweep_tmp_roots()
            self._tmp_root = new_tmp_root()
            self.project = self._snapshot(Project.load(self.project_dir, self.stage))
            self._task_store = FileTaskStore(self.state_dir / "tasks", self.task_retention)
            self.tasks = TaskRunner(self._task_store, self.deliveries)
            self.aws.start()
            self._forkserver = ForkServer(
                preload=[*BASE_PRELOAD, *third_party_imports(self.project.app_path)],
                on_exit=self._on_pipeline_exit,
                tmp_root=self._tmp_root,
            )
            self._forkserver.start()
            self.tabpy = TabPyFunctions(
                self.project_dir,
                self.state_dir,
                self._runtime_for_handler,
                passwords=self.passwords,
            )
            self.catalog = self._catalog_for(self._describe(self._forkserver, self.project))
            for runtime in self.catalog.app_runtimes():
                runtime.load()
            self.tabpy.start()
            self.aws.provision(load_buckets(self.project.directory))  # before the triggers: seeds fire nothing
            self._start_triggers()
            self._supervisor = threading.Thread(target=self._supervise, name="lambdapool-supervisor")
            self._supervisor.start()
            self._server = EmulatorServer(self.host, self.port, EmulatorApp(self), self.connection_limits)
            self.port = self._server.server_port
            if self.allow_deploy:  # its pipelines query deployed functions through the server: bound by now
                self.tabpy.start_evaluate({URL_VARIABLE: self.url, TOKEN_VARIABLE: self.tabpy_token})
            if self.reloads.enabled:
                self._reloader = Reloader(self.project_dir, self.reload)
                self._reloader.start()
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

    def reload(self, changed: Sequence[str] = ()) -> bool:
        """Describe the project again and serve the new version: new pools start with the new code, the calls
        the old ones hold finish there, and then the old pools stop; waiting asynchronous work moves to the
        new pools. A call arriving at an old pool after the swap is sent on to its successor, so none is lost
        and none is served by old code once this returns (it logs "reloaded"). If the new version cannot be
        described (a syntax error, init code that raises), the old one keeps serving and the error is
        logged and kept in the status. Returns whether the new version is served."""
        with self._reload_lock:
            forkserver = self._forkserver
            if forkserver is None or self._stopping.is_set():
                return False
            what = ", ".join(changed) or "the project"
            project: Project | None = None
            try:
                project = self._snapshot(Project.load(self.project_dir, self.stage))
                described = self._describe(forkserver, project)
            except BaseException as error:
                if project is not None:
                    _remove_code(project)
                if not isinstance(error, (AppLoadError, ValueError, OSError)):
                    raise
                self.reloads.failed(changed, str(error))
                log.error("reload after changes to %s failed; the previous version keeps serving:\n%s", what, error)
                return False
            if self._stopping.is_set():  # closing meanwhile: nothing new is started
                _remove_code(project)
                return False
            old, previous = self.catalog, self.project
            self.project = project
            new = self._catalog_for(described)
            for runtime in new.app_runtimes():
                runtime.load()
            self.catalog = new  # new arrivals from here
            self.deliveries.retarget(new.successor)
            self._restart_triggers()
            draining = list(old.app_runtimes())  # TabPy's deployed functions are not the app's: they go on
            self._draining = draining
            for runtime in draining:
                runtime.stop_arrivals()  # a late arrival goes on to the new pool from here
            deadline = time.monotonic() + max((_drain_bound_s(runtime) for runtime in draining), default=0.0)
            for runtime in draining:
                while not runtime.drain(min(0.1, max(0.0, deadline - time.monotonic()))):
                    if self._stopping.is_set() or time.monotonic() >= deadline:
                        break
            for runtime in draining:
                runtime.close()  # calls still running at the deadline (or at a close) end here
            self._draining = []
            _remove_code(previous)
            endpoints = sum(len(service.endpoints) for service in new.services.values())
            self.reloads.succeeded(changed, endpoints)
            log.info("reloaded after changes to %s: %d endpoints", what, endpoints)
            return True

    def reset(self, timeout_s: float = 60.0) -> None:
        """Back to what a test starts from, pipelines kept warm (what the pytest plugin does between tests):
        once the work in flight has ended (at most ``timeout_s``), tasks, counters and errors are forgotten and
        the local AWS is emptied (the buckets and queues of the S3 triggers come back, empty)."""
        deadline = time.monotonic() + timeout_s
        while not self.deliveries.idle() and time.monotonic() < deadline:
            time.sleep(0.005)
        for runtime in self.catalog.runtimes():
            runtime.drain(max(0.0, deadline - time.monotonic()))
        self._task_store.clear()
        for runtime in self.catalog.runtimes():
            runtime.stats.reset()
        self.aws.reset()

    def close(self) -> None:
        """Stop serving and end every pipeline, thread and process the emulator started. Safe to call twice."""
        self._stopping.set()
        if self._reloader is not None:
            self._reloader.close()
        server, self._server = self._server, None
        if server is not None:
            if self._serve_thread is not None:
                server.shutdown()
                self._serve_thread.join()
            server.server_close()  # no new connection from here on
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._forkserver is not None:
            self._forkserver.stop_restarting()  # closing pools must not wait for a fork server to come back
        self.aws.stop_polling()  # the S3 pollers hand events to the deliveries: stop them first
        self.deliveries.close()
        for runtime in list(self._draining):  # a reload in progress stops draining (it sees _stopping)
            runtime.close()
        with self._reload_lock:  # a reload in progress has finished (it starts nothing once stopping)
            if self.scheduler is not None:
                self.scheduler.stop()
            self.catalog.close()  # fails the calls in flight, so the threads waiting on them end
            if self.tabpy is not None:
                self.tabpy.close()
        if server is not None:
            server.close_connections()  # after the pools: every call in flight has had its answer
        self.deliveries.join()
        if self._supervisor is not None:
            self._supervisor.join()
        forkserver, self._forkserver = self._forkserver, None
        if forkserver is not None:
            forkserver.stop()
        _remove_code(self.project)
        if self._tmp_root is not None:  # every pipeline has ended
            shutil.rmtree(self._tmp_root, ignore_errors=True)
        self.aws.stop()  # last: pipelines may use it until they end

    # -- queries --------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def services(self) -> dict[str, ServedService]:
        """The served services by id."""
        return dict(self.catalog.services)

    def aws_address(self) -> dict[str, Any]:
        """``{"endpointUrl", "mode", "pid", "restarts"}``: the local AWS, its server's pid and restart count."""
        return self.aws.describe()

    def status(self) -> dict[str, Any]:
        next_fire = self.scheduler.next_fire if self.scheduler is not None else {}
        forkserver = self._forkserver
        fork_server = {"pid": None, "restarts": 0}
        cold_starts: dict[str, Any] = {"fast": self.fast_cold_starts, "delayMs": self.cold_start_delay_ms}
        if forkserver is not None:
            fork_server = {"pid": forkserver.pid, "restarts": forkserver.restarts}
            cold_starts["freshStartMs"] = round(forkserver.startup_ms, 3)
            cold_starts["addedMs"] = self._cold_start_delay_ms(forkserver)
        return {
            "project": str(self.project_dir),
            "aws": self.aws_address(),
            "nextFire": {name: when.isoformat() if when else None for name, when in next_fire.items()},
            "app": self.project.app_name,
            "stage": self.stage,
            "forkServerPid": fork_server["pid"],  # what "forkServer" says, under its former key
            "forkServer": fork_server,
            # what a fresh interpreter spends starting with the preloaded libraries, and what each cold start adds
            "coldStarts": cold_starts,
            # the Lambda and API Gateway figures this emulator applies (each a flag of lambdapool local)
            "fidelity": {
                "gatewayTimeoutS": self.gateway_timeout_s,
                "initLimitS": self.init_limit_s,
                "asyncRetryDelayS": self.deliveries.async_retry_delay_s,
                "keepWarmS": self.keep_warm_s,
                "freeze": self.freeze,
            },
            "services": self.catalog.status(lambda runtime: {"asyncQueue": {"depth": self.deliveries.depth(runtime)}}),
            "appRoutes": self.catalog.app_status(),
            "reload": self.reloads.to_json(),
        }

    # -- internals ------------------------------------------------------------------------------------

    def _runtime_for(
        self, spec: EndpointSpec, environment: dict[str, str] | None = None, **replaced: Any
    ) -> EndpointRuntime:
        """A runtime whose pipelines serve ``spec`` (their configuration: the project's for it, with
        ``environment`` added and the ``replaced`` fields of :class:`PipelineConfig` replaced)."""

        def launch(pool_id: int, label: str) -> Pipeline:
            forkserver = self._forkserver
            if forkserver is None:
                raise RuntimeError("the emulator is stopped")
            assert self._tmp_root is not None
            with new_tmp_dir(self._tmp_root, label) as tmp_dir:  # Lambda's /tmp: private, empty at first
                config = self.project.pipeline_config(
                    spec,
                    label,
                    {**self.aws.environment(), **(environment or {})},
                    self._cold_start_delay_ms(forkserver),
                    tmp_dir=tmp_dir,
                )
                if replaced:
                    config = dataclasses.replace(config, **replaced)
                pid, sock = forkserver.spawn(config)
            return Pipeline(label, pid, sock, tmp_dir)

        return EndpointRuntime(
            spec,
            launch,
            init_limit_s=self.init_limit_s,
            keep_warm_s=self.keep_warm_s,
            cruise_grace_s=CRUISE_GRACE_S,
            freeze=self.freeze,
        )

    def _cold_start_delay_ms(self, forkserver: ForkServer) -> int:
        """What a pipeline start waits on top of its own init: ``cold_start_delay_ms`` and, unless
        ``fast_cold_starts``, what the fork server took to start (a fresh interpreter importing the app's
        libraries, which a forked pipeline skips), so that the cold start is what Lambda's Init would be."""
        fresh_ms = 0 if self.fast_cold_starts else round(forkserver.startup_ms)
        return self.cold_start_delay_ms + fresh_ms

    def _snapshot(self, project: Project) -> Project:
        """``project`` with a snapshot of its code of its own (see :func:`snapshot_code`), under
        ``STATE_DIR/code/<pid>/`` (those of emulators no longer running are removed)."""
        if not (self.state_dir / ".gitignore").exists():  # the emulator's state is nothing to commit
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / ".gitignore").write_text("# lambdapool's local state: tasks, code snapshots\n*\n")
        code_root = self.state_dir / "code"
        if not self._code_swept:
            self._code_swept = True
            for stale in code_root.glob("*"):
                if stale.name.isdigit() and not process_running(int(stale.name)):
                    shutil.rmtree(stale, ignore_errors=True)
        self._code_versions += 1
        target = code_root / str(os.getpid()) / f"v{self._code_versions}-{uuid.uuid4().hex[:8]}"
        return dataclasses.replace(project, code_dir=snapshot_code(project.directory, target))

    def _runtime_for_handler(
        self, spec: EndpointSpec, handler: str, options: dict[str, str], environment: dict[str, str]
    ) -> EndpointRuntime:
        """A runtime whose pipelines serve ``handler`` (a factory's import path, called with ``options``: see
        :func:`~.pipelines._config.handler_path`), not the app's code, with ``environment`` added."""
        return self._runtime_for(
            spec, environment, mode=PipelineMode.HANDLER, handler=handler, handler_options=options, code_dir=""
        )

    def _describe(self, forkserver: ForkServer, project: Project) -> ProjectDescription:
        """``project``'s declarations; raises :class:`AppLoadError` for a service named as TabPy's."""
        described = describe_project(forkserver, project, self.aws.environment())
        if any(service.service_id == TABPY_SERVICE for service in described.services):
            raise AppLoadError(
                f"app.py declares a service {TABPY_SERVICE!r}: that id is reserved for the functions deployed "
                "with TabPy's client (rename the service)"
            )
        return described

    def _catalog_for(self, described: ProjectDescription) -> Catalog:
        for problem in unmatched_pool_files(self.project.directory, described.services):
            log.warning("warning: %s", problem)
        alias = self.project.function_environment("").get(QUALIFIER_VARIABLE)
        region = region_of(self.aws.environment(), os.environ)  # what the pipelines see, as the project does
        api_handler = api_handler_spec(self.project.app_name, self.stage, self.project.chalice_config)
        return Catalog(
            described.services,
            self._runtime_for,
            self.project.deployed_name,
            [alias] if alias else [],
            region,
            app_routes=described.app,
            api_handler=api_handler,
            shared=[self.tabpy.service] if self.tabpy is not None else [],
        )

    def _all_runtimes(self) -> list[EndpointRuntime]:
        """The runtimes served, and those a reload is draining."""
        hidden = list(self.tabpy.hidden_runtimes()) if self.tabpy is not None else []
        return [*self.catalog.runtimes(), *self._draining, *hidden]

    def _restart_triggers(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        schedules, s3_triggers = self._triggers()
        self.aws.rewire_s3_triggers(s3_triggers, self._deliver_event)
        self.scheduler = Scheduler(schedules, self._fire_on_schedule)
        self.scheduler.start()

    def _triggers(self) -> tuple[list[tuple[str, str]], list[tuple[str, S3Trigger, int]]]:
        schedules: list[tuple[str, str]] = []
        s3_triggers: list[tuple[str, S3Trigger, int]] = []
        for runtime in self.catalog.runtimes():
            spec = runtime.spec
            trigger = spec.trigger
            if trigger is None:
                continue
            if isinstance(trigger, ScheduleTrigger):
                schedules.append((spec.lambda_name, trigger.expression))
            elif isinstance(trigger, S3Trigger):
                visibility_s = spec.timeout_s + spec.pool.timeout_ms // 1000 + 30
                s3_triggers.append((spec.lambda_name, trigger, visibility_s))
            else:
                assert_never(trigger)
        return schedules, s3_triggers

    def _start_triggers(self) -> None:
        schedules, s3_triggers = self._triggers()
        self.aws.wire_s3_triggers(s3_triggers, self._deliver_event)
        self.scheduler = Scheduler(schedules, self._fire_on_schedule)
        self.scheduler.start()

    def _deliver_event(self, name: str, event: dict[str, Any]) -> None:
        runtime = self.catalog.function(name)
        assert runtime is not None, name
        self.deliveries.submit(trigger_delivery(runtime, event))

    def _fire_on_schedule(self, name: str, when: dt.datetime) -> None:
        self._deliver_event(name, scheduled_event(self.project.deployed_name(name), when, self.catalog.region))

    def _on_pipeline_exit(self, pid: int, status: int) -> None:
        for runtime in self._all_runtimes():
            if runtime.on_exit(pid, status):
                return

    def _supervise(self) -> None:
        while not self._stopping.wait(self._supervise_interval_s):
            for runtime in self._all_runtimes():
                runtime.supervise()
