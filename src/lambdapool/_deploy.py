"""``lambdapool config``: what ``chalice deploy`` needs to apply the pools, and a package size check.

- Each endpoint's Lambda function gets ``reserved_concurrency`` (its pool's ``ceil``), ``lambda_timeout``
  (``timeout_s``) and ``lambda_memory_size`` (``memory_mb``) under ``stages.<stage>.lambda_functions`` in
  ``.chalice/config.json``; everything else in the file is kept as it is.
- lambdapool's runtime (the model and the Chalice adapter, standard library plus ``chalice.app``) is copied
  into the project's ``vendor/``, which Chalice puts in every deployment package.
- The endpoints' managed folders (``folders=[...]``) are copied into ``vendor/`` too (those under
  ``chalicelib/`` are packaged already), so that they sit at ``LAMBDA_TASK_ROOT/<folder>`` on Lambda as
  beside ``app.py`` locally; what the package will hold is checked against Lambda's size limit.
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
from ._limits import API_GATEWAY_TIMEOUT_S, UNZIPPED_LIMIT_BYTES, ZIPPED_LIMIT_BYTES
from ._model import EndpointSpec
from ._names import check_deployed_name, deployed_name
from .emulator.pipelines._forkserver import ForkServer
from .emulator.project._project import Project, describe_project

#: The package's host-side modules; with the ``emulator`` package, all that is not vendored.
HOST_MODULES = frozenset({"cli.py", "testing.py", "_deploy.py", "tabpy.py"})


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


#: The list of folders ``lambdapool config`` copied into ``vendor/`` (so that it removes those no longer declared).
FOLDERS_MANIFEST = ".lambdapool-folders.json"


def declared_folders(specs: Iterable[EndpointSpec]) -> list[str]:
    """Every endpoint's folders, once each, in declaration order."""
    return list(dict.fromkeys(folder for spec in specs for folder in spec.folders))


def _tree_files(root: Path) -> dict[str, Path]:
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}


def vendor_folders(project_dir: Path, folders: list[str]) -> list[str]:
    """Copy ``folders`` (paths relative to the project) into ``project_dir/vendor/``, file by file, and remove
    what a previous run copied that is no longer there or declared; returns a line per folder changed.
    Folders under ``chalicelib/`` are left alone: Chalice packages that directory itself."""
    vendor = project_dir / "vendor"
    manifest = vendor / FOLDERS_MANIFEST
    try:
        previous = [str(folder) for folder in json.loads(manifest.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        previous = []
    shipped = [folder for folder in folders if Path(folder).parts[0] != "chalicelib"]
    changes = []
    for folder in shipped:
        if Path(folder).parts[0] == "lambdapool":
            raise ValueError(f"folder {folder!r}: the name lambdapool is taken in the package by lambdapool's runtime")
        source, target = project_dir / folder, vendor / folder
        if not source.is_dir():
            raise ValueError(f"folder {folder!r} is declared but {source} is not a directory")
        wanted, present = _tree_files(source), _tree_files(target) if target.is_dir() else {}
        changed = 0
        for name, path in wanted.items():
            destination = target / name
            if name not in present or destination.read_bytes() != path.read_bytes():
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
                changed += 1
        for name in sorted(set(present) - set(wanted)):
            (target / name).unlink()
            changed += 1
        if changed:
            changes.append(f"vendor/{folder}: {changed} file(s) copied or removed ({len(wanted)} in the folder)")
    for folder in previous:
        if folder not in shipped and (vendor / folder).is_dir() and Path(folder).parts[0] != "lambdapool":
            shutil.rmtree(vendor / folder)
            changes.append(f"vendor/{folder}: removed (no longer declared)")
    if shipped or previous:
        vendor.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(shipped) + "\n", encoding="utf-8")
    return changes


def _bytes_under(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) if path.is_dir() else 0


def check_package_contents(project_dir: Path, folders: list[str]) -> list[str]:
    """What ``app.py``, ``chalicelib/``, ``vendor/`` and the folders will weigh unzipped in the package (before
    its requirements); raises ``ValueError`` naming the biggest folders when that alone is over Lambda's limit.
    Returns a note for the next steps when the folders are big enough for the zipped limit to matter."""
    vendor = project_dir / "vendor"
    try:
        vendored = [str(folder) for folder in json.loads((vendor / FOLDERS_MANIFEST).read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        vendored = []
    shipped = [folder for folder in folders if Path(folder).parts[0] != "chalicelib"]
    folder_sizes = sorted(((_bytes_under(project_dir / folder), folder) for folder in folders), reverse=True)
    total = (
        _bytes_under(project_dir / "app.py")
        + _bytes_under(project_dir / "chalicelib")
        + _bytes_under(vendor)
        - sum(_bytes_under(vendor / folder) for folder in vendored)  # replaced by the folders as they are now
        + sum(_bytes_under(project_dir / folder) for folder in shipped)
    )
    mb = 2**20
    if total > UNZIPPED_LIMIT_BYTES:
        biggest = ", ".join(f"{folder} ({size / mb:.1f} MB)" for size, folder in folder_sizes[:5]) or "none"
        raise ValueError(
            f"the package would hold {total / mb:.1f} MB unzipped before its requirements, over Lambda's "
            f"{UNZIPPED_LIMIT_BYTES // mb} MB: app.py, chalicelib/, vendor/ and the folders (biggest folders: "
            f"{biggest})"
        )
    if sum(size for size, _ in folder_sizes) > ZIPPED_LIMIT_BYTES // 2:
        return ["the folders are large: check the package against Lambda's limits with lambdapool check-package"]
    return []


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
    folders = declared_folders(specs)
    size_notes = check_package_contents(project, folders)  # before anything is written
    changes = apply_settings(config, stage, specs)
    if provisioned:
        changes += opt_in_provisioned(config, stage)
    if changes or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    changes += vendor_runtime(project)
    changes += vendor_folders(project, folders)
    templates = [TASK_BUCKET_TEMPLATE] if any(spec.trigger is None for spec in specs) else []  # /submit's tasks
    changes += write_templates(project, templates + ([PROVISIONED_TEMPLATE] if provisioned else []))
    next_steps = route_timeout_warnings(specs) + size_notes
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
