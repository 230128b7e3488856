"""Type hints as a contract (``lambdapool._types`` and ``ParameterSpec.bind``): the 400 a mismatched body
gets, before the function runs."""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

import pytest

from lambdapool import BadRequest
from lambdapool._invocation import ParameterSpec
from lambdapool._types import check, describe, json_type


class Model:  # a class of the app's own: no JSON type, any value passes
    pass


@pytest.mark.parametrize(
    ("annotation", "written"),
    [
        (str, "str"),
        (int, "int"),
        (float, "float"),
        (bool, "bool"),
        (list[int], "list[int]"),
        (list, "list[Any]"),
        (dict[str, float], "dict[str, float]"),
        (float | None, "float | None"),
        (Optional[str], "str | None"),  # noqa: UP045
        (Union[int, str], "int | str"),  # noqa: UP007
        (Literal["a", "b"], "Literal['a', 'b']"),
        (Any, "Any"),
        (list[dict[str, list[int]]], "list[dict[str, list[int]]]"),
    ],
)
def test_json_types_are_read_from_annotations_and_written_as_python_writes_them(annotation: Any, written: str) -> None:
    kind = json_type(annotation)

    assert kind is not None and describe(kind) == written
    assert json.loads(json.dumps(kind)) == kind  # plain data: it crosses to the emulator


@pytest.mark.parametrize("annotation", [Model, dict[int, str], tuple[int, int] | Model, set[int]])
def test_annotations_that_are_no_json_type_take_any_value(annotation: Any) -> None:
    assert json_type(annotation) is None


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        (float, 1, None),  # an int is accepted for a float
        (float, 1.5, None),
        (float, "abc", "got a string"),
        (float, True, "got a boolean"),  # bool is not a number
        (int, 2.0, "got a number"),
        (int, False, "got a boolean"),
        (bool, 0, "got an integer"),
        (str, None, "got null"),
        (list[int], [1, 2, "x"], "at [2]: got a string"),
        (dict[str, float], {"a": 1, "b": None}, "at ['b']: got null"),
        (float | None, None, None),
        (Literal["a", "b"], "c", "got 'c'"),
        (Literal[1], True, "got True"),
        (list[Any], {"not": "a list"}, "got an object"),
    ],
)
def test_check_names_what_does_not_match(annotation: Any, value: Any, problem: str | None) -> None:
    kind = json_type(annotation)
    assert kind is not None

    assert check(value, kind) == problem


def estimate(  # ``note: str = None`` is what is tested: an implicit Optional
    scale: float,
    tags: list[str],
    mode: Literal["fast", "exact"] = "fast",
    note: str = None,  # noqa: RUF013
    raw=None,
):
    return scale


def test_bind_answers_a_mismatch_with_a_400_naming_the_parameter_the_type_and_what_came() -> None:
    parameters = ParameterSpec.from_function(estimate, "svc/estimate")

    with pytest.raises(BadRequest) as raised:
        parameters.bind({"scale": "abc", "tags": ["a", 1], "raw": object()})

    assert raised.value.status == 400
    assert raised.value.message == (
        "parameter 'scale' must be float, got a string; parameter 'tags' must be list[str], at [1]: got an integer"
    )


def test_bind_accepts_what_matches_and_a_none_default_makes_none_welcome() -> None:
    parameters = ParameterSpec.from_function(estimate, "svc/estimate")

    assert parameters.bind({"scale": 2, "tags": [], "note": None, "raw": {"any": "thing"}})["scale"] == 2
    with pytest.raises(BadRequest, match="parameter 'mode' must be Literal\\['fast', 'exact'\\], got 'slow'"):
        parameters.bind({"scale": 2, "tags": [], "mode": "slow"})


def test_kwargs_values_are_checked_against_their_annotation() -> None:
    def tagged(name: str, **counts: int) -> None: ...

    parameters = ParameterSpec.from_function(tagged, "svc/tagged")

    assert parameters.bind({"name": "n", "a": 1}) == {"name": "n", "a": 1}
    with pytest.raises(BadRequest, match="parameter 'b' must be int, got a string"):
        parameters.bind({"name": "n", "b": "x"})


def test_the_types_survive_the_trip_to_the_emulator() -> None:
    parameters = ParameterSpec.from_function(estimate, "svc/estimate")

    assert ParameterSpec.from_json(json.loads(json.dumps(parameters.to_json()))) == parameters


def test_string_annotations_that_do_not_evaluate_take_any_value() -> None:
    namespace: dict[str, Any] = {}
    source = compile("def late(x: 'Undefined', y: 'int'): return x", "<app>", "exec", dont_inherit=True)
    exec(source, namespace)

    parameters = ParameterSpec.from_function(namespace["late"], "svc/late")

    assert parameters.types == {"y": {"kind": "int"}}
