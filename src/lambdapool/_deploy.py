"""``lambdapool config``: what ``chalice deploy`` needs to apply the pools, and a package size check.

- Each endpoint's Lambda function gets ``reserved_concurrency`` (its pool's ``ceil``), ``lambda_timeout``
  (``timeout_s``) and ``lambda_memory_size`` (``memory_mb``) under ``stages.<stage>.lambda_functions`` in
  ``.chalice/config.json``; everything else in the file is kept as it is.
- lambdapool's runtime (the model and the Chalice adapter, standard library plus ``chalice.app``) is copied
  into the project's ``vendor/``, which Chalice puts in every deployment package.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._forward import QUALIFIER_VARIABLE
from ._gateway import API_GATEWAY_TIMEOUT_S
from ._model import EndpointSpec
from ._names import check_deployed_name, deployed_name
from .emulator._forkserver import ForkServer
from .emulator._project import Project, describe_project

#: The package's host-side modules; with the ``emulator`` package, all that is not vendored.
HOST_MODULES = frozenset({"cli.py", "testing.py", "_deploy.py"})
ZIPPED_LIMIT_BYTES = 50 * 2**20


def route_timeout_warnings(
    specs: Iterable[EndpointSpec], gateway_timeout_s: float = API_GATEWAY_TIMEOUT_S
) -> list[str]:
    """A warning for every endpoint whose ``timeout_s`` its run route can never use (API Gateway ends every
    route at ``gateway_timeout_s``): ``lambdapool config`` and ``lambdapool local`` print them."""
    return [
        f"warning: {spec.service_id}/{spec.endpoint_id} has timeout_s={spec.timeout_s}, but API Gateway ends "
        f"every route at {gateway_timeout_s:g} s: call it through /submit, or lower timeout_s"
        for spec in specs
        if spec.trigger is None and spec.timeout_s > gateway_timeout_s
    ]


UNZIPPED_LIMIT_BYTES = 250 * 2**20


def runtime_files(package_dir: Path = Path(__file__).parent) -> list[str]:
    """The files that go into Lambda packages: the top level of the package (the model and the Chalice
    adapter) minus the host-side modules. The ``emulator`` package is never vendored."""
    return sorted(
        path.name
        for path in package_dir.iterdir()
        if path.is_file() and path.suffix in (".py", ".typed") and path.name not in HOST_MODULES
    )


def project_endpoints(project: Project) -> list[EndpointSpec]:
    """Every endpoint ``app.py`` declares, pool files applied (the app is loaded in a child process)."""
    with ForkServer() as forkserver:
        services = describe_project(forkserver, project).services
    return [endpoint for service in services for endpoint in service.endpoints]


def function_settings(spec: EndpointSpec) -> dict[str, int]:
    """The Chalice settings that carry an endpoint's pool and limits to its Lambda function."""
    return {
        "reserved_concurrency": spec.pool.ceil,
        "lambda_timeout": spec.timeout_s,
        "lambda_memory_size": spec.memory_mb,
    }


def apply_settings(config: dict[str, Any], stage: str, specs: list[EndpointSpec]) -> list[str]:
    """Write every function's settings into ``config`` (in place); returns a line per change made."""
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    functions = stage_config.setdefault("lambda_functions", {})
    changes: list[str] = []
    for spec in specs:
        if spec.inline:
            continue
        settings = functions.setdefault(spec.lambda_name, {})
        for key, value in function_settings(spec).items():
            if settings.get(key) != value:
                before = settings.get(key, "unset")
                changes.append(f"stages.{stage}.lambda_functions.{spec.lambda_name}.{key}: {before} -> {value}")
                settings[key] = value
    return changes


PROVISIONED_ALIAS = "live"


def opt_in_provisioned(config: dict[str, Any], stage: str) -> list[str]:
    """Make the stage's run routes invoke the alias that carries provisioned concurrency."""
    variables = config.setdefault("stages", {}).setdefault(stage, {}).setdefault("environment_variables", {})
    if variables.get(QUALIFIER_VARIABLE) == PROVISIONED_ALIAS:
        return []
    variables[QUALIFIER_VARIABLE] = PROVISIONED_ALIAS
    return [f"stages.{stage}.environment_variables.{QUALIFIER_VARIABLE}: -> {PROVISIONED_ALIAS}"]


def provisioned_commands(app: str, stage: str, specs: list[EndpointSpec]) -> list[str]:
    """The CloudFormation deploys (infra/provisioned-concurrency.yaml) that keep each floor warm on AWS."""
    return [
        "aws cloudformation deploy --template-file infra/provisioned-concurrency.yaml "
        f"--stack-name {deployed_name(app, stage, spec.lambda_name)}-floor "
        f"--parameter-overrides FunctionName={deployed_name(app, stage, spec.lambda_name)} Floor={spec.pool.floor}"
        for spec in specs
        if not spec.inline and spec.pool.floor >= 1
    ]


def event_invoke_commands(app: str, stage: str, specs: list[EndpointSpec]) -> list[str]:
    """The commands that give each function whose asynchronous settings differ from Lambda's defaults its
    event invoke config (Chalice has no setting for it)."""
    return [
        f"aws lambda put-function-event-invoke-config --function-name {deployed_name(app, stage, spec.lambda_name)} "
        f"--maximum-retry-attempts {spec.async_retries} --maximum-event-age-in-seconds {spec.max_event_age_s}"
        for spec in specs
        if not spec.inline and (spec.async_retries, spec.max_event_age_s) != (2, 21600)
    ]


def check_names(app: str, stage: str, specs: list[EndpointSpec]) -> None:
    """Raise ``ValueError`` if a deployed function name would exceed Lambda's 64 characters."""
    for spec in specs:
        if not spec.inline:
            check_deployed_name(app, stage, spec.lambda_name)


def vendor_runtime(project_dir: Path) -> list[str]:
    """Copy lambdapool's runtime into ``project_dir/vendor/lambdapool``; returns a line per file changed."""
    source = Path(__file__).parent
    target = project_dir / "vendor" / "lambdapool"
    target.mkdir(parents=True, exist_ok=True)
    changes = []
    files = runtime_files()
    for name in files:
        content = (source / name).read_bytes()
        destination = target / name
        if not destination.is_file() or destination.read_bytes() != content:
            destination.write_bytes(content)
            changes.append(f"vendor/lambdapool/{name}: updated")
    for stale in sorted(set(p.name for p in target.iterdir()) - set(files)):
        path = target / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        changes.append(f"vendor/lambdapool/{stale}: removed")
    return changes


#: The CloudFormation templates a deploy may need beside Chalice's (shipped in the package, under ``infra/``).
TEMPLATES_DIR = Path(__file__).parent / "infra"
TASK_BUCKET_TEMPLATE = "task-bucket.yaml"
PROVISIONED_TEMPLATE = "provisioned-concurrency.yaml"


def write_templates(project_dir: Path, names: list[str]) -> list[str]:
    """Copy the templates ``names`` into ``project_dir/infra/`` where they are missing (one a user edited is
    kept); returns a line per file written."""
    changes = []
    for name in names:
        destination = project_dir / "infra" / name
        if not destination.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes((TEMPLATES_DIR / name).read_bytes())
            changes.append(f"infra/{name}: written")
    return changes


@dataclasses.dataclass(frozen=True)
class ConfigResult:
    """What ``lambdapool config`` changed (a line each; none the second time) and what to run next."""

    changes: list[str]
    next_steps: list[str]


def configure(project_dir: str | Path, stage: str = "dev", provisioned: bool = False) -> ConfigResult:
    """Do all of ``lambdapool config``.

    With ``provisioned``, the stage opts in to provisioned concurrency for the pools' floors: its run routes
    invoke the alias ``live``, and the next steps are the CloudFormation deploys that create it.

    Raises ``ValueError`` for a function name over Lambda's limit or a ``.chalice/config.json`` that is not
    a JSON object, :class:`~lambdapool._errors.AppLoadError` if ``app.py`` cannot be loaded.
    """
    loaded = Project.load(project_dir, stage)
    project = loaded.directory
    specs = project_endpoints(loaded)
    path = project / ".chalice" / "config.json"
    config = dict(loaded.chalice_config) or {"version": "2.0", "app_name": project.name, "stages": {}}
    app = loaded.app_name
    check_names(app, stage, specs)
    changes = apply_settings(config, stage, specs)
    if provisioned:
        changes += opt_in_provisioned(config, stage)
    if changes or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    changes += vendor_runtime(project)
    templates = [TASK_BUCKET_TEMPLATE] if any(spec.trigger is None for spec in specs) else []  # /submit's tasks
    changes += write_templates(project, templates + ([PROVISIONED_TEMPLATE] if provisioned else []))
    next_steps = route_timeout_warnings(specs)
    next_steps.append(f"cd {project} && chalice deploy --stage {stage}")
    next_steps += event_invoke_commands(app, stage, specs)
    if provisioned:
        next_steps += provisioned_commands(app, stage, specs)
    return ConfigResult(changes, next_steps)


@dataclasses.dataclass(frozen=True)
class PackageSize:
    """A deployment package's sizes against Lambda's limits, with its biggest top-level entries."""

    zipped_bytes: int
    unzipped_bytes: int
    biggest: list[tuple[str, int]]

    @property
    def over_limit(self) -> bool:
        return self.zipped_bytes > ZIPPED_LIMIT_BYTES or self.unzipped_bytes > UNZIPPED_LIMIT_BYTES

    def report(self) -> str:
        """One line of totals; when over a limit, a warning and the biggest contributors."""
        mb = 2**20
        lines = [
            f"package: {self.zipped_bytes / mb:.1f} MB zipped (limit {ZIPPED_LIMIT_BYTES // mb} MB), "
            f"{self.unzipped_bytes / mb:.1f} MB unzipped (limit {UNZIPPED_LIMIT_BYTES // mb} MB)"
        ]
        if self.over_limit:
            lines.append("WARNING: over Lambda's limits; chalice deploy will fail. Biggest contributors (unzipped):")
            lines += [f"  {size / mb:8.1f} MB  {name}" for name, size in self.biggest]
        return "\n".join(lines)


def package_size(zip_path: str | Path, top: int = 10) -> PackageSize:
    """Measure a deployment zip (``chalice package`` / ``chalice deploy`` build one)."""
    path = Path(zip_path)
    by_entry: Counter[str] = Counter()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            by_entry[info.filename.split("/", 1)[0]] += info.file_size
    return PackageSize(path.stat().st_size, sum(by_entry.values()), by_entry.most_common(top))
