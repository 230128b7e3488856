"""Managed folders in the model: what a declaration accepts, and the ``folders`` global it publishes."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lambdapool._folders import Folders, check_folders, folder_paths


def module_in(directory: Path, source: str) -> types.ModuleType:
    """Run ``source`` as a module whose file is ``directory/app.py`` (as app.py runs when imported)."""
    module = types.ModuleType("folder_app")
    module.__file__ = str(directory / "app.py")
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


@pytest.fixture(autouse=True)
def _no_task_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)


@pytest.mark.parametrize("bad", ["/abs/models", "../outside", "models/../../outside", ".", "", "  "])
def test_a_folder_must_be_a_directory_inside_the_project(bad: str) -> None:
    with pytest.raises(ValueError, match="folder"):
        check_folders("endpoint s/e", [bad])


def test_folders_must_be_a_list_and_are_normalized() -> None:
    with pytest.raises(ValueError, match="must be a list"):
        check_folders("endpoint s/e", "models")
    assert check_folders("endpoint s/e", ["models/", "data/./lookups"]) == ("models", "data/lookups")


def test_init_code_after_a_declaration_reads_its_folders_from_the_global(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights.txt").write_text("42")
    (tmp_path / "lookups").mkdir()
    module = module_in(
        tmp_path,
        "from lambdapool import Service\n"
        "svc = Service('svc')\n"
        "@svc.function(folders=['models', 'lookups'])\n"
        "def predict():\n"
        "    return WEIGHTS\n"
        "WEIGHTS = int(open(folders[0] + '/weights.txt').read())\n",
    )

    assert module.WEIGHTS == 42
    assert isinstance(module.folders, Folders)
    assert module.folders == [str(tmp_path / "models"), str(tmp_path / "lookups")]


def test_lambdas_task_root_is_where_folders_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "package"
    (package / "models").mkdir(parents=True)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(package))
    module = module_in(
        tmp_path / "elsewhere",
        "from lambdapool import Service\nsvc = Service('svc')\n@svc.function(folders=['models'])\ndef f():\n    pass\n",
    )
    assert module.folders == [str(package / "models")]
    assert folder_paths(["models"]) == [str(package / "models")]


def test_a_missing_folder_fails_the_declaration_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        module_in(
            tmp_path,
            "from lambdapool import Service\nsvc = Service('svc')\n"
            "@svc.function(folders=['models'])\ndef f():\n    pass\n",
        )
    message = str(raised.value)
    assert "endpoint svc/f" in message and "'models' not found in" in message and "lambdapool config" in message


def test_a_modules_own_folders_variable_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    module = module_in(
        tmp_path,
        "from lambdapool import Service\nfolders = 'mine'\nsvc = Service('svc')\n"
        "@svc.function(folders=['models'])\ndef f():\n    pass\n",
    )
    assert module.folders == "mine"


def test_an_endpoint_without_folders_leaves_the_global_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    module = module_in(
        tmp_path,
        "from lambdapool import Service\nsvc = Service('svc')\n"
        "@svc.function(folders=['models'])\ndef first():\n    pass\n"
        "@svc.function()\ndef second():\n    pass\n",
    )
    assert module.folders == [str(tmp_path / "models")]
