"""Loading a project's ``app.py`` inside a pipeline, and finding the services it declares."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..._errors import AppLoadError
from ..._model import Service
from ...chalice import mounted_services

#: The module Chalice deploys ``app.py`` as (its deployer resolves handlers as ``app.<name>``).
APP_MODULE = "app"


def app_path(project_dir: str | Path) -> Path:
    """``PROJECT_DIR/app.py``; raises :class:`AppLoadError` if it does not exist."""
    path = Path(project_dir).resolve() / "app.py"
    if not path.is_file():
        raise AppLoadError(f"{path} not found: a lambdapool project is a Chalice project with an app.py")
    return path


def import_app(project_dir: str | Path, code_dir: str | Path | None = None) -> ModuleType:
    """Import ``app.py`` as the module ``app`` (as ``chalice local`` does), running its init code.

    With ``code_dir`` (a snapshot of ``app.py`` and ``chalicelib/``), the code is imported from there, the
    project directory still on the path for the rest (``vendor/``...). The code's directory goes first on
    ``sys.path`` so ``chalicelib`` and vendored modules import. Exceptions raised by the app's own code
    propagate unchanged.
    """
    project = str(app_path(project_dir).parent)
    path = app_path(code_dir) if code_dir is not None else Path(project) / "app.py"
    for directory in (project, str(path.parent)):  # the code's directory ends up first
        if directory not in sys.path:
            sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(APP_MODULE, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    spec.loader.exec_module(module)
    return module


def find_services(module: ModuleType, *, required: bool = True) -> list[Service]:
    """The services mounted on the module's Chalice app(s); failing that, its module-level services.

    Raises :class:`AppLoadError` if two differ but share an id, or, when ``required``, if there are none.
    """
    found: dict[str, Service] = {}
    values = list(vars(module).values())
    candidates = [service for value in values for service in mounted_services(value)]
    if not candidates:
        candidates = [value for value in values if isinstance(value, Service)]
    for service in candidates:
        other = found.setdefault(service.service_id, service)
        if other is not service:
            raise AppLoadError(f"two different services are named {service.service_id!r}")
    if not found and required:
        raise AppLoadError(
            f"{getattr(module, '__file__', module)} declares no lambdapool service and no Chalice app: create "
            "a Chalice app, or a lambdapool.Service with endpoints declared by @service.function() and mounted "
            "with mount(app, service)"
        )
    return list(found.values())
