"""The snapshot of a project's code a version of the emulator runs (``snapshot_code``): copied, and compiled
once there, so that no pipeline compiles it again, whatever ``PYTHONDONTWRITEBYTECODE`` says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lambdapool.emulator.project._project import snapshot_code


def test_the_snapshot_is_compiled_once_and_the_project_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as PYTHONDONTWRITEBYTECODE=1 sets it
    project = tmp_path / "project"
    (project / "chalicelib" / "models").mkdir(parents=True)
    (project / "app.py").write_text("from chalicelib.models import score\n")
    (project / "chalicelib" / "__init__.py").write_text("")
    (project / "chalicelib" / "models" / "__init__.py").write_text("def score():\n    return 1\n")
    (project / "chalicelib" / "broken.py").write_text("def broken(:\n")
    (project / "chalicelib" / "weights.json").write_text("{}")

    target = snapshot_code(project, tmp_path / "snapshot")

    for module in ("app.py", "chalicelib/__init__.py", "chalicelib/models/__init__.py"):
        cached = Path(importlib.util.cache_from_source(str(target / module)))
        assert cached.read_bytes()[:4] == importlib.util.MAGIC_NUMBER, module
    # what does not compile is left to the pipeline's import, which reports it as the app's init error
    assert not Path(importlib.util.cache_from_source(str(target / "chalicelib" / "broken.py"))).exists()
    assert (target / "chalicelib" / "weights.json").read_text() == "{}"
    assert not list(project.rglob("__pycache__"))


def test_with_a_pycache_prefix_nothing_is_compiled_where_the_snapshot_would_not_remove_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))  # as PYTHONPYCACHEPREFIX sets it
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("x = 1\n")

    target = snapshot_code(project, tmp_path / "snapshot")

    assert (target / "app.py").read_text() == "x = 1\n"
    assert not prefix.exists() and not list(target.rglob("*.pyc"))
