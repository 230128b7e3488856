"""What a pipeline needs to run a function deployed with TabPy's client, without the ``tabpy`` package.

TabPy's client cloudpickles a ``tabpy.tabpy_tools.custom_query_object.CustomQueryObject`` wrapping the user's
function (the function by value, the class by reference). :func:`load_query_object` unpickles it with those
classes mapped to this module's own, which run the function the same way: ``query(*args, **kwargs)`` calls it
and checks that the result is JSON-serializable.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

#: The modules of the ``tabpy`` package whose classes a deployed object refers to, and ours for them.
_MAPPED_MODULES = frozenset(
    {
        "tabpy.tabpy_tools.custom_query_object",
        "tabpy.tabpy_tools.query_object",
        "tabpy_tools.custom_query_object",  # TabPy 1.x's package layout
        "tabpy_tools.query_object",
    }
)

DEFAULT_DOCSTRING = "-- no docstring found in query function --"


class QueryObject:
    """TabPy's base class of deployed objects."""

    def __init__(self, description: str = ""):
        self.description = description

    def get_dependencies(self) -> list[Any]:
        return []

    def get_methods(self) -> list[dict[str, str]]:
        return [{"method": "query"}]

    def get_docstring(self) -> str:
        return DEFAULT_DOCSTRING

    def query(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class CustomQueryObject(QueryObject):
    """A deployed function (TabPy's ``CustomQueryObject``)."""

    custom_query: Any

    def __init__(self, query: Any, description: str = ""):
        super().__init__(description)
        self.custom_query = query

    def query(self, *args: Any, **kwargs: Any) -> Any:
        result = self.custom_query(*args, **kwargs)
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            raise TypeError(f"Result from object query is not json serializable: {result}") from None
        return result

    def get_docstring(self) -> str:
        docstring = getattr(self.custom_query, "__doc__", None)
        return docstring if docstring and isinstance(docstring, str) else DEFAULT_DOCSTRING


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _MAPPED_MODULES and name in ("CustomQueryObject", "QueryObject"):
            return CustomQueryObject if name == "CustomQueryObject" else QueryObject
        return super().find_class(module, name)


def load_query_object(data: bytes) -> Any:
    """Unpickle a deployed object (cloudpickle must be importable: its output refers to it)."""
    return _Unpickler(io.BytesIO(data)).load()
