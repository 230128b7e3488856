"""A project as the emulator and ``lambdapool config`` see it: its ``app.py``, ``.chalice/config.json``,
pool files, the libraries worth preloading, the services it declares, and each pipeline's configuration.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import py_compile
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._errors import AppLoadError, ChannelClosed
from ..._invocation import LambdaFunction, new_log_stream_name, region_of
from ..._model import EndpointSpec, Pool, ServiceSpec
from ..._names import deployed_name
from ...chalice import handler_name
from ..pipelines._config import API_HANDLER, PipelineConfig, PipelineMode
from ..pipelines._loader import APP_MODULE, app_path
from ..pipelines._routes import AppRoutes
from ..pipelines._wire import recv_frame

if TYPE_CHECKING:
    from ..pipelines._forkserver import ForkServer

#: Always preloaded in the fork server: what every app.py imports.
BASE_PRELOAD = ("json", "logging", "chalice", "lambdapool", "lambdapool.chalice")
#: How long reading a project's declarations may take (its init code runs once for it).
DESCRIBE_TIMEOUT_S = 120
#: Lambda's time zone; unlike Lambda's other variables, a function's configuration may set another.
LAMBDA_TZ = ":UTC"
#: The variables that name the temporary directory (``tempfile`` reads them in this order).
TMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")


def read_chalice_config(project_dir: str | Path) -> dict[str, Any]:
    """The parsed ``.chalice/config.json``, or ``{}`` if the project has none.

    Raises ``ValueError`` if the file exists but is not a JSON object.
    """
    path = Path(project_dir) / ".chalice" / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def load_pool_override(project_dir: str | Path, service_id: str, endpoint_id: str, pool: Pool) -> Pool:
    """Apply ``config/services/<SERVICE_ID>/<ENDPOINT_ID>.json`` from ``project_dir`` to ``pool``, if present.

    The file holds ``{"pool": {"floor": 1, "ceil": 8, "cruise": 2, "queue": 16, "timeout": 10000}}``; any
    subset of keys may be given. Raises ``ValueError`` if the file is not valid JSON or its pool is invalid.
    """
    path = Path(project_dir) / "config" / "services" / service_id / f"{endpoint_id}.json"
    if not path.is_file():
        return pool
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("pool", {}), dict):
        raise ValueError(f'{path}: expected an object like {{"pool": {{"floor": 1, "ceil": 8, ...}}}}')
    return pool.with_overrides(document.get("pool", {}), source=str(path))


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


@dataclasses.dataclass(frozen=True)
class Project:
    """A Chalice project directory holding ``app.py``, served or configured for one ``stage``."""

    directory: Path
    stage: str = "dev"
    chalice_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The snapshot of the code this version runs (see :func:`snapshot_code`), or ``None``: the files as they are.
    code_dir: Path | None = None

    @classmethod
    def load(cls, directory: str | Path, stage: str = "dev") -> Project:
        """Raises :class:`AppLoadError` without an ``app.py``, ``ValueError`` for an unreadable config."""
        project_dir = app_path(directory).parent
        return cls(project_dir, stage, read_chalice_config(project_dir))

    @property
    def app_path(self) -> Path:
        return self.directory / "app.py"

    @property
    def app_name(self) -> str:
        """The Chalice app name: ``app_name`` from the config, else the project directory's name."""
        return str(self.chalice_config.get("app_name") or self.directory.name)

    def deployed_name(self, function_name: str) -> str:
        """The name Chalice deploys ``function_name`` under in this stage (the API handler: ``{app}-{stage}``)."""
        if function_name == API_HANDLER:
            return f"{self.app_name}-{self.stage}"
        return deployed_name(self.app_name, self.stage, function_name)

    def function_environment(self, function_name: str) -> dict[str, str]:
        """Environment variables Chalice gives ``function_name`` in the stage: top level, then stage, then
        the function's own settings at each level, later ones winning."""
        config = self.chalice_config
        stage_config = config.get("stages", {}).get(self.stage, {})
        layers = [
            config.get("environment_variables", {}),
            config.get("lambda_functions", {}).get(function_name, {}).get("environment_variables", {}),
            stage_config.get("environment_variables", {}),
            stage_config.get("lambda_functions", {}).get(function_name, {}).get("environment_variables", {}),
        ]
        environment: dict[str, str] = {}
        for layer in layers:
            environment.update({str(key): str(value) for key, value in layer.items()})
        return environment

    def describe_environment(self) -> dict[str, str]:
        """The configured variables ``app.py`` is imported with to read its declarations: those of every
        function Chalice deploys from it (each Lambda function imports the whole ``app.py``, so module code
        may read any of them), the API handler's winning over the others', as ``chalice local`` imports it
        with the API handler's. Each pipeline then gets its own function's variables alone."""
        config = self.chalice_config
        stage_config = config.get("stages", {}).get(self.stage, {})
        names = {*config.get("lambda_functions", {}), *stage_config.get("lambda_functions", {})} - {API_HANDLER}
        environment: dict[str, str] = {}
        for name in [*sorted(names), API_HANDLER]:
            environment.update(self.function_environment(name))
        return environment

    def pipeline_config(
        self,
        spec: EndpointSpec | None,
        pipeline_id: str = "",
        aws_environment: Mapping[str, str] | None = None,
        cold_start_delay_ms: int = 0,
        tmp_dir: str | Path | None = None,
    ) -> PipelineConfig:
        """The configuration of a pipeline serving ``spec`` (``None``: one that describes the project): the
        environment its Lambda function would get (the function's variables, ``aws_environment`` (the local
        AWS) on top, then Lambda's own: see :meth:`lambda_environment`), in the region that environment
        names, else the one the emulator's own environment names, else us-east-1. ``tmp_dir`` stands for the
        environment's private ``/tmp``: it is ``TMPDIR`` (and ``TMP``, ``TEMP``), whatever the function's
        variables say, so ``tempfile`` uses it, in init code too."""
        environment = self.function_environment(spec.lambda_name) if spec is not None else self.describe_environment()
        environment.update(aws_environment or {})
        environment.setdefault("TZ", LAMBDA_TZ)
        environment.update(self.lambda_environment(spec, region_of(environment, os.environ)))
        environment["LAMBDAPOOL_STAGE"] = self.stage
        if tmp_dir is not None:
            environment.update(dict.fromkeys(TMP_VARIABLES, str(tmp_dir)))
        return PipelineConfig(
            mode=PipelineMode.DESCRIBE
            if spec is None
            else PipelineMode.ROUTES
            if spec.kind == "api"
            else PipelineMode.SERVE,
            project_dir=str(self.directory),
            service_id=spec.service_id if spec is not None else "",
            endpoint_id=spec.endpoint_id if spec is not None else "",
            pipeline_id=pipeline_id,
            environment=environment,
            cold_start_delay_ms=cold_start_delay_ms if spec is not None else 0,
            code_dir=str(self.code_dir) if self.code_dir is not None else "",
            tmp_dir=str(tmp_dir) if tmp_dir is not None else "",
        )

    def lambda_function(self, spec: EndpointSpec, region: str, log_stream_name: str = "") -> LambdaFunction:
        """The Lambda function ``spec`` is deployed as in this stage, in ``region`` (its ``log_stream_name``
        names one execution environment)."""
        return LambdaFunction.named(self.deployed_name(spec.lambda_name), spec.memory_mb, region, log_stream_name)

    def lambda_environment(self, spec: EndpointSpec | None, region: str) -> dict[str, str]:
        """The variables Lambda sets in a new execution environment of ``spec``'s function in ``region``:
        the region, the function's names and memory size (:meth:`LambdaFunction.environment`) with a log
        stream of the environment's own, ``_HANDLER`` (the handler Chalice deploys) and ``LAMBDA_TASK_ROOT``
        (the project directory: the code, like ``/var/task``). ``None``: those every environment shares."""
        environment = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "LAMBDA_TASK_ROOT": str(self.directory)}
        if spec is not None:
            environment.update(self.lambda_function(spec, region, new_log_stream_name()).environment())
            handler = "app" if spec.kind == "api" else handler_name(spec)  # the API handler is the app itself
            environment["_HANDLER"] = f"{APP_MODULE}.{handler}"
        return environment

    def with_pool_files(self, service: ServiceSpec) -> ServiceSpec:
        """``service`` with the pool files of ``config/services/`` applied to its endpoints."""
        endpoints = tuple(
            dataclasses.replace(
                endpoint,
                pool=load_pool_override(self.directory, service.service_id, endpoint.endpoint_id, endpoint.pool),
            )
            for endpoint in service.endpoints
        )
        return dataclasses.replace(service, endpoints=endpoints)


@dataclasses.dataclass(frozen=True)
class Bucket:
    """A bucket the local AWS creates at start (and after each reset), with the files of ``seed`` (a directory)
    put in it as objects, their paths below ``seed`` as keys."""

    name: str
    seed: Path | None = None


def load_buckets(project_dir: Path) -> list[Bucket]:
    """The buckets ``config/buckets.json`` declares: ``{"buckets": ["name", {"name": ..., "seed": "dir"}]}``
    (``seed`` relative to the project). Raises ``ValueError`` saying what is wrong with the file."""
    path = project_dir / "config" / "buckets.json"
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from exc
    entries = document.get("buckets") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected {{"buckets": ["name", {{"name": "...", "seed": "dir"}}]}}')
    buckets = []
    for entry in entries:
        name, seed = (
            (entry, None)
            if isinstance(entry, str)
            else (entry.get("name"), entry.get("seed"))
            if isinstance(entry, dict)
            else (None, None)
        )
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}: every bucket needs a name, got {entry!r}")
        if seed is not None and not (project_dir / str(seed)).is_dir():
            raise ValueError(f"{path}: the seed of {name} is not a directory: {seed}")
        buckets.append(Bucket(name, project_dir / str(seed) if seed is not None else None))
    return buckets


def unmatched_pool_files(project_dir: Path, services: list[ServiceSpec]) -> list[str]:
    """The pool files under ``config/services/`` that name no declared endpoint (a misspelt name would
    otherwise be ignored without a word), each with what it could have meant."""
    root = project_dir / "config" / "services"
    known = {(service.service_id, endpoint.endpoint_id) for service in services for endpoint in service.endpoints}
    problems = []
    for path in sorted(root.glob("*/*.json")):
        if path.parent.name == "tabpy":  # TabPy's deployed functions come and go: theirs are read as they deploy
            continue
        if (path.parent.name, path.stem) not in known:
            endpoints = ", ".join(sorted(f"{s}/{e}" for s, e in known)) or "none"
            problems.append(f"{path.relative_to(project_dir)} names no endpoint (the endpoints: {endpoints})")
    return problems


#: What a snapshot of a project's code holds: what Chalice packages of it besides ``vendor/``.
CODE_ENTRIES = ("app.py", "chalicelib")


def snapshot_code(project_dir: Path, target: Path) -> Path:
    """Copy ``app.py`` and ``chalicelib/`` (data files too, caches left out) to ``target``, a directory of
    the emulator's own: pipelines of this version import them from there, whatever happens to the files.

    The copies are compiled there once (:func:`_compile_snapshot`), so that no pipeline compiles them again."""
    target.mkdir(parents=True)
    shutil.copy2(project_dir / "app.py", target / "app.py")
    library = project_dir / "chalicelib"
    if library.is_dir():
        shutil.copytree(library, target / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _compile_snapshot(target)
    return target


def _compile_snapshot(target: Path) -> None:
    """Write the bytecode of the snapshot's modules next to them, where the import system looks for it.

    Otherwise, with ``PYTHONDONTWRITEBYTECODE`` set (as in many container images), every pipeline compiled
    ``app.py`` from source at its start: time, and garbage its memory kept (1.4 MB more private memory per
    pipeline for an app of 100 endpoints). The snapshot is the emulator's own, so this writes nothing into
    the project. A file that does not compile is left alone: its pipeline's import reports the error, as
    the app's init error. With ``PYTHONPYCACHEPREFIX``, nothing is compiled here: the files would be
    written under that prefix, where nothing would remove them with the snapshot."""
    if sys.pycache_prefix is not None:  # the bytecode would go to a tree of its own, outliving the snapshot
        return
    for source in [target / "app.py", *sorted((target / "chalicelib").rglob("*.py"))]:
        try:
            py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
        except (py_compile.PyCompileError, OSError, ValueError):
            continue


@dataclasses.dataclass(frozen=True)
class ProjectDescription:
    """What ``app.py`` declares: its services (pool files applied) and, if its Chalice app has routes or
    registrations of its own, those (``None`` for an app without a Chalice app)."""

    services: list[ServiceSpec]
    app: AppRoutes | None


def describe_project(
    forkserver: ForkServer, project: Project, aws_environment: Mapping[str, str] | None = None
) -> ProjectDescription:
    """What ``app.py`` declares, read in a short-lived process so that no user code runs here. Raises
    :class:`AppLoadError` with the traceback if the app fails to load."""
    _pid, sock = forkserver.spawn(project.pipeline_config(None, aws_environment=aws_environment))
    with sock:
        try:
            sock.settimeout(DESCRIBE_TIMEOUT_S)
            header, _ = recv_frame(sock)
        except (ChannelClosed, OSError, ValueError) as exc:
            raise AppLoadError(f"loading {project.app_path} killed its process ({exc})") from exc
    if header.get("op") == "init_error":
        raise AppLoadError(header["error"]["detailedMessage"].rstrip() + "\n" + header["error"]["message"])
    services = [project.with_pool_files(ServiceSpec.from_json(service)) for service in header["services"]]
    app = AppRoutes.from_json(header["app"]) if header.get("app") is not None else None
    return ProjectDescription(services, app)
