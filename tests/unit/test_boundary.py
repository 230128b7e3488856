"""The boundary between what goes into Lambda packages and what runs only on the developer's machine.

What ``lambdapool config`` vendors (the package minus ``emulator/`` and the host-side modules) must import,
when it is imported, only the standard library, ``chalice.app`` and other vendored modules: Lambda has
neither the emulator nor Werkzeug nor moto, and boto3 is imported only inside functions that need it.
Read from the source (no import, no process), so a violation is found before any package is built.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import lambdapool
from lambdapool._deploy import HOST_MODULES, runtime_files

PACKAGE_DIR = Path(lambdapool.__file__).parent
ALLOWED_THIRD_PARTY = {"chalice.app"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported: everywhere but inside functions and
    ``if TYPE_CHECKING:`` blocks (class bodies, ``try`` and other ``if`` blocks do run)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                found.append(statement)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(statement, ast.If) and _is_type_checking(statement.test):
                visit(statement.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(statement, field, [])
                    visit([child for child in children if isinstance(child, ast.stmt)])
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(tree.body)
    return found


def boundary_violations(package_dir: Path, vendored: list[str]) -> list[str]:
    """Every import-time import of a vendored module that reaches beyond the standard library,
    ``chalice.app`` and the other vendored modules, as ``"file:line: what"``."""
    vendored_modules = {name.removesuffix(".py") for name in vendored if name.endswith(".py")}
    problems: list[str] = []
    for name in sorted(vendored_modules):
        path = package_dir / f"{name}.py"
        for statement in import_time_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(statement, ast.ImportFrom) and statement.level:
                if statement.level > 1:
                    targets = ["<outside the package>"]
                elif statement.module:
                    targets = [statement.module]
                else:
                    targets = [alias.name for alias in statement.names]  # from . import x
                bad = [target for target in targets if target.split(".")[0] not in vendored_modules]
                problems += [f"{path.name}:{statement.lineno}: imports lambdapool's {target}" for target in bad]
                continue
            modules = (
                [statement.module or ""]
                if isinstance(statement, ast.ImportFrom)
                else [alias.name for alias in statement.names]
            )
            for module in modules:
                if module == "__future__" or module.split(".")[0] in sys.stdlib_module_names:
                    continue
                if module in ALLOWED_THIRD_PARTY:
                    continue
                problems.append(f"{path.name}:{statement.lineno}: imports {module}")
    return problems


def test_vendored_modules_import_only_the_standard_library_chalice_app_and_each_other() -> None:
    assert boundary_violations(PACKAGE_DIR, runtime_files()) == []


def test_the_boundary_check_fails_when_a_vendored_module_reaches_the_emulator_or_a_host_library(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "lambdapool"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    model = copy / "_model.py"
    model.write_text(
        model.read_text(encoding="utf-8")
        + "\nfrom .emulator import Emulator\nimport werkzeug\ntry:\n    import moto\nexcept ImportError:\n    pass\n"
        + "from chalice.local import LocalDevServer\n\n\nclass Late:\n    import boto3\n"
        + "\n\ndef lazy():\n    import boto3\n\n\nif TYPE_CHECKING:\n    import werkzeug.wrappers\n",
        encoding="utf-8",
    )
    problems = boundary_violations(copy, runtime_files(copy))
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "imports lambdapool's emulator",
        "imports werkzeug",
        "imports moto",
        "imports chalice.local",
        "imports boto3",  # in a class body: runs at import; the one inside lazy() does not
    ]


def test_config_vendors_the_package_minus_the_emulator_and_the_host_side_modules() -> None:
    files = runtime_files()
    top_level = {path.name for path in PACKAGE_DIR.iterdir() if path.is_file() and path.suffix in (".py", ".typed")}
    assert set(files) == top_level - HOST_MODULES
    assert {"__init__.py", "_model.py", "_errors.py", "chalice.py", "py.typed"} <= set(files)
    assert not {"cli.py", "testing.py", "_deploy.py"} & set(files)
    assert (PACKAGE_DIR / "emulator").is_dir() and not any(name.startswith("emulator") for name in files)


PIPELINES_DIR = PACKAGE_DIR / "emulator" / "pipelines"


def pipeline_side_violations(pipelines_dir: Path, vendored: list[str]) -> list[str]:
    """Every import-time import of a module of ``emulator/pipelines/`` that reaches beyond the standard
    library, the model (the vendored modules, which reach ``chalice.app`` at most) and ``pipelines/`` itself.
    What runs in the fork server is inherited by every pipeline: ``tests/integration/test_pipeline_boundary.py``
    reads a real pipeline's ``sys.modules``; this finds the import that would put something there."""
    model = {name.removesuffix(".py") for name in vendored if name.endswith(".py")}
    problems: list[str] = []
    for path in sorted(pipelines_dir.glob("*.py")):
        for statement in import_time_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(statement, ast.ImportFrom) and statement.level:
                module = statement.module or ""
                if statement.level == 1:  # pipelines/ itself
                    continue
                if statement.level == 3 and module.split(".")[0] in model:
                    continue
                problems.append(f"{path.name}:{statement.lineno}: imports {'.' * statement.level}{module}")
                continue
            modules = (
                [statement.module or ""]
                if isinstance(statement, ast.ImportFrom)
                else [alias.name for alias in statement.names]
            )
            problems += [
                f"{path.name}:{statement.lineno}: imports {module}"
                for module in modules
                if module != "__future__" and module.split(".")[0] not in sys.stdlib_module_names
            ]
    return problems


def test_the_pipeline_side_imports_only_the_standard_library_the_model_and_itself() -> None:
    assert pipeline_side_violations(PIPELINES_DIR, runtime_files()) == []


def test_the_pipeline_side_check_fails_when_a_pipeline_module_reaches_the_host_side(tmp_path: Path) -> None:
    copy = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    worker = copy / "_worker.py"
    worker.write_text(
        worker.read_text(encoding="utf-8")
        + "\nfrom ..project._project import Project\nimport werkzeug\nfrom ..._deploy import runtime_files\n"
        + "from ...emulator import Emulator\n\n\ndef lazy():\n    import chalice.local\n",
        encoding="utf-8",
    )
    problems = pipeline_side_violations(copy, runtime_files())
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "imports ..project._project",
        "imports werkzeug",
        "imports ..._deploy",
        "imports ...emulator",
    ]
