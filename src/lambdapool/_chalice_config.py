"""Reading a project's ``.chalice/config.json`` the way Chalice resolves it (stage over top level)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def app_name(project_dir: str | Path, config: dict[str, Any]) -> str:
    """The Chalice app name: ``app_name`` from the config, else the project directory's name."""
    return str(config.get("app_name") or Path(project_dir).resolve().name)


def function_environment(config: dict[str, Any], stage: str, function_name: str) -> dict[str, str]:
    """Environment variables Chalice gives ``function_name`` in ``stage``: top level, then stage, then the
    function's own settings at each level, later ones winning."""
    stage_config = config.get("stages", {}).get(stage, {})
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
