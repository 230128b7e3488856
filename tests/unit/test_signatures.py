"""Reading a declared function's parameters without ``inspect.signature``'s general machinery
(``lambdapool._invocation.parameters_of``, ``lambdapool._types.hints_of``): for every shape of plain function,
the same parameters, hints and listed defaults as the standard library gives."""

from __future__ import annotations

import functools
import inspect
import keyword
import math
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdapool._invocation import ParameterSpec, _json_or_repr, parameters_of
from lambdapool._types import hints_of

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name) and name not in ("args", "kwargs")
)
ANNOTATIONS = st.sampled_from(["", ": int", ": float", ": str", ": 'float'", ": list[int]", ": float | None", ": Any"])
DEFAULTS = st.sampled_from(["", " = 1", " = None", " = 'x'", " = 2.5", " = ()", " = float('nan')"])


@st.composite
def sources(draw: st.DrawFn) -> str:
    """The source of a function of any shape: positional-only, positional-or-keyword, ``*args`` or a bare
    ``*``, keyword-only, ``**kwargs``; any annotations and defaults Python accepts."""
    names = draw(st.lists(NAMES, min_size=0, max_size=8, unique=True))
    split = sorted(draw(st.lists(st.integers(0, len(names)), min_size=2, max_size=2)))
    positional_only, positional, keyword_only = names[: split[0]], names[split[0] : split[1]], names[split[1] :]
    star = draw(st.sampled_from(["", "*args", "*args: int"]))
    kwargs = draw(st.sampled_from(["", "**kwargs", "**kwargs: float"]))
    parts: list[str] = []
    defaulted = False
    for name in positional_only + positional:
        default = draw(DEFAULTS)
        if defaulted and not default:
            default = " = 0"  # after a default, positional parameters need one
        defaulted = defaulted or bool(default)
        annotation = draw(ANNOTATIONS)
        parts.append(f"{name}{annotation}{' ' + default.strip() if default and annotation else default}")
    if positional_only:
        parts.insert(len(positional_only), "/")
    if keyword_only or star:
        parts.append(star or "*")
    for name in keyword_only:
        annotation, default = draw(ANNOTATIONS), draw(DEFAULTS)
        parts.append(f"{name}{annotation}{' ' + default.strip() if default and annotation else default}")
    if kwargs:
        parts.append(kwargs)
    return f"def f({', '.join(parts)}) -> int:\n    return 0\n"


def compiled(source: str) -> Any:
    namespace: dict[str, Any] = {"Any": Any}
    exec(source, namespace)
    return namespace["f"]


@settings(max_examples=400, deadline=None)
@given(sources())
def test_a_plain_functions_parameters_are_those_inspect_signature_gives(source: str) -> None:
    function = compiled(source)
    expected = [
        (parameter.name, parameter.kind, parameter.default, parameter.annotation)
        for parameter in inspect.signature(function).parameters.values()
    ]
    found = [tuple(parameter) for parameter in parameters_of(function)]
    assert len(found) == len(expected), source
    for mine, theirs in zip(found, expected, strict=True):  # nan != nan: defaults by identity
        assert mine[:2] == theirs[:2] and mine[2] is theirs[2] and mine[3] == theirs[3], source


@settings(max_examples=200, deadline=None)
@given(sources())
def test_hints_are_those_get_type_hints_gives(source: str) -> None:
    function = compiled(source)
    assert hints_of(function) == typing.get_type_hints(function), source


def _wrapped(a: int, b: str = "x") -> int:
    return a


@functools.wraps(_wrapped)
def _wrapper(*args: Any, **kwargs: Any) -> int:
    return _wrapped(*args, **kwargs)


class _Callable:
    def __call__(self, x: float, *, y: int = 2) -> float:
        return x


def _with_signature(*args: Any) -> None: ...


_with_signature.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("q", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)]
)


def _with_text_signature(*args: Any) -> None: ...


_with_text_signature.__text_signature__ = "(a, b=1)"  # type: ignore[attr-defined]


class _Methods:
    def _scaled(self, factor: int, q: float) -> float:
        return factor * q

    scaled = functools.partialmethod(_scaled, 2)


def _too_many_defaults(x: int, y: int) -> int:
    return x + y


_too_many_defaults.__defaults__ = (1, 2, 3)


@pytest.mark.parametrize(
    "function",
    [
        _wrapper,
        _Callable(),
        functools.partial(_wrapped, 1),
        _with_signature,
        _with_text_signature,
        _Methods.scaled,
        _too_many_defaults,
        len,
    ],
    ids=[
        "wraps",
        "callable object",
        "partial",
        "__signature__",
        "__text_signature__",
        "partialmethod",
        "defaults reassigned",
        "builtin",
    ],
)
def test_other_callables_get_what_inspect_signature_says(function: Any) -> None:
    expected = [
        (parameter.name, parameter.kind, parameter.default, parameter.annotation)
        for parameter in inspect.signature(function).parameters.values()
    ]
    assert [tuple(parameter) for parameter in parameters_of(function)] == expected


@typing.no_type_check
def _unchecked(x: int, y: float = 1.0) -> float:
    return x + y


def test_a_function_marked_no_type_check_takes_any_value() -> None:
    assert hints_of(_unchecked) == typing.get_type_hints(_unchecked) == {}
    assert ParameterSpec.from_function(_unchecked, "endpoint s/f").bind({"x": "any", "y": [1]}) == {
        "x": "any",
        "y": [1],
    }


def test_a_wrapped_function_binds_by_the_wrapped_signature() -> None:
    spec = ParameterSpec.from_function(_wrapper, "endpoint s/f")
    assert (spec.required, spec.optional, spec.var_keyword) == (("a",), ("b",), False)
    assert spec.types == {"a": {"kind": "int"}, "b": {"kind": "str"}}


@pytest.mark.parametrize(
    ("default", "listed"),
    [
        (1, 1),
        (True, True),
        ("x", "x"),
        (2.5, 2.5),
        (None, None),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        ((1, 2), (1, 2)),  # JSON encodes a tuple as an array
        ({"a": [1]}, {"a": [1]}),
        (object, repr(object)),
        ({1, 2}, "{1, 2}"),
    ],
)
def test_defaults_are_listed_as_json_or_as_their_repr(default: Any, listed: Any) -> None:
    assert _json_or_repr(default) == listed
