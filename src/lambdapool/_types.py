"""Type hints as a contract on what a request body may bind (DESIGN.md section 1).

A parameter annotated with a JSON-compatible type (``str``, ``int``, ``float``, ``bool``, ``None``, ``list[X]``,
``dict[str, X]``, ``X | None``, unions, ``Literal[...]``, ``Any``) is checked before the function runs, so a
bad call is a 400 naming the parameter, the expected type and what was sent, never a 500 from inside the
function. An ``int`` is accepted for ``float``; ``bool`` is not an ``int``. Unannotated parameters, and
annotations that are no JSON type (a class of the app's own), take any value.

A type is plain data (:data:`JsonType`, a small dict) so that it crosses to the emulator, which binds
requests without importing the app. Standard library only: this module goes into Lambda packages.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["JsonType", "check", "describe", "hints_of", "json_type"]

#: ``{"kind": "str" | "int" | "float" | "bool" | "null" | "any" | "list" | "dict" | "union" | "literal", ...}``:
#: ``list`` has ``items``, ``dict`` has ``values``, ``union`` has ``options``, ``literal`` has ``values``.
JsonType = dict[str, Any]

_SCALARS: dict[Any, str] = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null", None: "null"}
_LISTS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_DICTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_JSON_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean", "null": "null"}


def hints_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The function's parameter annotations, evaluated (``from __future__ import annotations`` makes them
    strings); one that cannot be evaluated is left out (it takes any value).

    Annotations that are all plain classes (``x: float``) are what ``typing.get_type_hints`` would return
    as they are: they are taken without running it (in every pipeline's init, for each endpoint, where
    code run for the first time costs private memory)."""
    annotations = getattr(function, "__annotations__", None)
    if (
        sys.version_info >= (3, 11)  # before, get_type_hints makes ``x: float = None`` Optional[float]
        and isinstance(function, types.FunctionType)
        and not getattr(function, "__no_type_check__", False)
        and type(annotations) is dict
        and all(type(value) is type for value in annotations.values())
    ):
        return dict(annotations)
    try:
        return typing.get_type_hints(function)
    except Exception:  # a name the module does not define at run time: fall back to what evaluates alone
        hints: dict[str, Any] = {}
        for name, parameter in inspect.signature(function).parameters.items():
            annotation = parameter.annotation
            if annotation is inspect.Parameter.empty:
                continue
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, getattr(function, "__globals__", {}))
                except Exception:
                    continue
            hints[name] = annotation
        return hints


def json_type(annotation: Any) -> JsonType | None:
    """The JSON type an annotation stands for; ``None`` for one that is no JSON type (any value passes)."""
    if annotation is Any:
        return {"kind": "any"}
    if annotation in _SCALARS:
        return {"kind": _SCALARS[annotation]}
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation in _LISTS or origin in _LISTS:
        items = json_type(arguments[0]) if arguments else {"kind": "any"}
        return {"kind": "list", "items": items or {"kind": "any"}}
    if annotation in _DICTS or origin in _DICTS:
        if arguments and arguments[0] is not str:
            return None  # JSON object keys are strings: a dict[int, ...] cannot come from JSON as such
        values = json_type(arguments[1]) if len(arguments) == 2 else {"kind": "any"}
        return {"kind": "dict", "values": values or {"kind": "any"}}
    if origin is typing.Union or origin is types.UnionType:
        options = [json_type(argument) for argument in arguments]
        if any(option is None for option in options):
            return None
        return {"kind": "union", "options": options}
    if origin is typing.Literal:
        if all(value is None or isinstance(value, (str, int, float, bool)) for value in arguments):
            return {"kind": "literal", "values": list(arguments)}
        return None
    if origin is typing.Annotated:
        return json_type(arguments[0])
    return None


def describe(kind: JsonType) -> str:
    """A type as Python writes it: ``list[int]``, ``float | None``, ``Literal['a', 'b']``."""
    name = kind["kind"]
    if name == "null":
        return "None"
    if name == "any":
        return "Any"
    if name == "list":
        return f"list[{describe(kind['items'])}]"
    if name == "dict":
        return f"dict[str, {describe(kind['values'])}]"
    if name == "union":
        return " | ".join(describe(option) for option in kind["options"])
    if name == "literal":
        return "Literal[" + ", ".join(repr(value) for value in kind["values"]) + "]"
    return str(name)


def _what(value: Any) -> str:
    """A JSON value's type, as a mismatch names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def check(value: Any, kind: JsonType) -> str | None:
    """``None`` if ``value`` is of ``kind``; otherwise what does not match (``"got a string"``, ``"at [2]: got
    null"``)."""
    name = kind["kind"]
    if name == "any":
        return None
    if name in _JSON_NAMES:
        matches = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "null": value is None,
        }[name]
        return None if matches else f"got {_what(value)}"
    if name == "literal":
        allowed = kind["values"]
        same = any(type(value) is type(choice) and value == choice for choice in allowed)
        return None if same else f"got {value!r}"
    if name == "union":
        problems = [check(value, option) for option in kind["options"]]
        return None if any(problem is None for problem in problems) else f"got {_what(value)}"
    if name == "list":
        if not isinstance(value, list):
            return f"got {_what(value)}"
        for index, item in enumerate(value):
            problem = check(item, kind["items"])
            if problem is not None:
                return f"at [{index}]: {problem}"
        return None
    if name == "dict":
        if not isinstance(value, Mapping):
            return f"got {_what(value)}"
        for key, item in value.items():
            problem = check(item, kind["values"])
            if problem is not None:
                return f"at [{key!r}]: {problem}"
        return None
    return None
