"""Dataiku's managed folders: directories of data an endpoint reads, declared ``folders=[...]``.

A folder is a path relative to the project directory (beside ``app.py``). The function gets the folders'
absolute paths as ``context.folders`` and, as on Dataiku, app.py's module gets them as a global ``folders``,
so that init code can load a model from one. The paths are resolved against the code's root: Lambda's
``LAMBDA_TASK_ROOT`` (``/var/task`` on AWS, the project directory in the emulator's pipelines), else the
directory of the module declaring the endpoint (``chalice local``, Chalice's test client). ``lambdapool config``
ships the folders inside the Lambda package (see :mod:`lambdapool._deploy`).

Runtime code: standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

#: The name of the module global that holds the folders (Dataiku's).
GLOBAL_NAME = "folders"


class Folders(list[str]):
    """The ``folders`` global: the absolute paths of the folders of the endpoint declared last with some,
    in their declared order."""


def check_folders(where: str, folders: object) -> tuple[str, ...]:
    """The declared folders, normalized; raises ``ValueError`` unless they are relative paths inside the
    project."""
    if isinstance(folders, str) or not isinstance(folders, Sequence):
        raise ValueError(f"{where}: folders must be a list of paths relative to the project, got {folders!r}")
    checked = []
    for folder in folders:
        if not isinstance(folder, str) or not folder.strip():
            raise ValueError(f"{where}: folders must be non-empty paths, got {folder!r}")
        normal = os.path.normpath(folder)
        if os.path.isabs(folder) or normal == ".." or normal.startswith(".." + os.sep) or normal == ".":
            raise ValueError(
                f"{where}: folder {folder!r} must be a directory inside the project, relative to it "
                "(it is shipped inside the Lambda package)"
            )
        checked.append(normal)
    return tuple(checked)


def code_root(function: Callable[..., Any] | None = None) -> str:
    """The directory folders are relative to: ``LAMBDA_TASK_ROOT``, else the directory of the module that
    defines ``function``, else the working directory."""
    root = os.environ.get("LAMBDA_TASK_ROOT")
    if root:
        return root
    module_file = getattr(function, "__globals__", {}).get("__file__") if function is not None else None
    return os.path.dirname(os.path.abspath(module_file)) if module_file else os.getcwd()


def folder_paths(folders: Sequence[str], function: Callable[..., Any] | None = None) -> list[str]:
    """The absolute paths of ``folders``."""
    root = code_root(function)
    return [os.path.join(root, folder) for folder in folders]


def publish(where: str, folders: Sequence[str], function: Callable[..., Any]) -> None:
    """Set the ``folders`` global of ``function``'s module to ``folders``' paths (Dataiku's convention), unless
    the module has a ``folders`` of its own. Raises ``ValueError`` for a folder that does not exist: on Lambda,
    a folder that was not shipped in the package (``lambdapool config`` ships them)."""
    paths = folder_paths(folders, function)
    missing = [folder for folder, path in zip(folders, paths, strict=True) if not os.path.isdir(path)]
    if missing:
        root = code_root(function)
        raise ValueError(
            f"{where}: folder(s) {', '.join(repr(folder) for folder in missing)} not found in {root} "
            "(folders are relative to the project; on Lambda, `lambdapool config` ships them in the package)"
        )
    namespace = getattr(function, "__globals__", None)
    if namespace is None:
        return
    current = namespace.get(GLOBAL_NAME)
    if current is None or isinstance(current, Folders):
        namespace[GLOBAL_NAME] = Folders(paths)
