"""Test query files: what is accepted, what is refused and why, and how answers are compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdapool.emulator.project._test_queries import TestQueryError, load_file, load_project, query_file_of, same_json


def write(tmp_path: Path, content: object, service: str = "svc", endpoint: str = "ep") -> Path:
    path = tmp_path / "test_queries" / service / f"{endpoint}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_file_holds_named_queries_with_or_without_an_expected_response(tmp_path: Path) -> None:
    path = write(tmp_path, [{"name": "one", "q": {"x": 1}, "expect": 2}, {"q": {}}])
    queries = load_file(path, "svc", "ep")
    assert [(q.name, q.q, q.has_expect) for q in queries] == [("one", {"x": 1}, True), ("query 2", {}, False)]
    assert queries[0].expect == 2 and queries[0].where == "svc/ep"


def test_an_expected_null_is_an_expectation(tmp_path: Path) -> None:
    (query,) = load_file(write(tmp_path, [{"name": "none", "q": {}, "expect": None}]), "svc", "ep")
    assert query.has_expect and query.expect is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON file"),
        ({"name": "x"}, "expected a list"),
        (["x"], "query 1: expected an object"),
        ([{"name": "x"}], "query 1 (x): q (the request body) is missing"),
        ([{"name": "x", "q": {}}, {"name": "x", "q": {}}], "query 2: the name 'x' is used twice"),
        ([{"name": "x", "q": {}, "expected": 1}], "unknown attribute(s) expected"),
        ([{"name": "", "q": {}}], "name must be a non-empty string"),
    ],
)
def test_a_malformed_file_is_a_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(TestQueryError) as raised:
        load_file(path, "svc", "ep")
    assert message in str(raised.value) and str(path) in str(raised.value)


def test_files_are_found_by_service_and_endpoint_and_misplaced_ones_ignored(tmp_path: Path) -> None:
    write(tmp_path, [{"name": "a", "q": {}}], "svc", "b")
    write(tmp_path, [{"name": "b", "q": {}}], "svc", "a")
    write(tmp_path, [{"name": "c", "q": {}}], "other", "a")
    (tmp_path / "test_queries" / "loose.json").write_text("[]")
    assert [(q.where, q.name) for q in load_project(tmp_path)] == [("other/a", "c"), ("svc/a", "b"), ("svc/b", "a")]
    assert query_file_of(tmp_path / "test_queries" / "svc" / "a.json", tmp_path) == ("svc", "a")
    assert query_file_of(tmp_path / "test_queries" / "loose.json", tmp_path) is None
    assert query_file_of(tmp_path / "elsewhere" / "svc" / "a.json", tmp_path) is None


def test_a_file_named_after_an_invalid_id_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, [], "svc", "not an id")
    with pytest.raises(TestQueryError, match="is not a valid endpoint id"):
        load_file(path, "svc", "not an id")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (3, 3.0, True),
        (True, 1, False),
        (False, 0, False),
        (None, None, True),
        (None, 0, False),
        ([1, 2], [1, 2.0], True),
        ([1, 2], [1, 2, 3], False),
        ({"a": [True]}, {"a": [1]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ("1", 1, False),
    ],
)
def test_answers_are_compared_as_json_values(a: object, b: object, same: bool) -> None:
    assert same_json(a, b) is same
    assert same_json(b, a) is same
