"""Loading a project's ``app.py`` and finding the services it declares."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ._model import Service, mounted_services

APP_MODULE_NAME = "app"


class AppLoadError(Exception):
    """``app.py`` is missing, fails to import, or declares no usable services. Raised by the loader."""


def app_path(project_dir: str | Path) -> Path:
    """``PROJECT_DIR/app.py``; raises :class:`AppLoadError` if it does not exist."""
    path = Path(project_dir).resolve() / "app.py"
    if not path.is_file():
        raise AppLoadError(f"{path} not found: a lambdapool project is a Chalice project with an app.py")
    return path


def import_app(project_dir: str | Path) -> ModuleType:
    """Import ``app.py`` as the module ``app`` (as ``chalice local`` does), running its init code.

    The project directory goes first on ``sys.path`` so ``chalicelib`` and vendored modules import.
    Exceptions raised by the app's own code propagate unchanged.
    """
    path = app_path(project_dir)
    project = str(path.parent)
    if project not in sys.path:
        sys.path.insert(0, project)
    spec = importlib.util.spec_from_file_location(APP_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def find_services(module: ModuleType) -> list[Service]:
    """The services mounted on the module's Chalice app(s); failing that, its module-level services.

    Raises :class:`AppLoadError` if there are none or two differ but share an id.
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
    if not found:
        raise AppLoadError(
            f"{getattr(module, '__file__', module)} declares no lambdapool service: create a "
            "lambdapool.Service, declare endpoints with @service.function() and call mount(app, service)"
        )
    return list(found.values())
