"""Dataiku's test queries: JSON queries kept with the project, played against an emulator.

``test_queries/<service>/<endpoint>.json`` holds a list of ``{"name", "q", "expect"?}``: ``q`` is the request
body of the endpoint's run route and ``expect``, when present, the ``response`` the call must answer. A query
passes when its call succeeds (HTTP 200) and, if it has an ``expect``, answers exactly that (compared as JSON
values). ``lambdapool test-queries`` and the pytest plugin both play them with :func:`play`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..._names import ID_PATTERN

_ID = re.compile(ID_PATTERN)

#: Where a project keeps its test queries: ``test_queries/<service>/<endpoint>.json``.
TEST_QUERIES_DIR = "test_queries"
#: How long one query may take, its queue wait and a cold start included.
QUERY_TIMEOUT_S = 120.0

_MISSING: Any = object()


class TestQueryError(ValueError):
    """A test query file that cannot be played (not JSON, not a list of queries, a misnamed file)."""

    __test__ = False  # not a test class, for pytest


@dataclasses.dataclass(frozen=True)
class TestQuery:
    """One query of a test query file."""

    __test__ = False

    service: str
    endpoint: str
    name: str
    q: Any
    #: The ``response`` the call must answer (:data:`_MISSING`: any, as long as the call succeeds).
    expect: Any
    source: Path

    @property
    def has_expect(self) -> bool:
        return self.expect is not _MISSING

    @property
    def where(self) -> str:
        return f"{self.service}/{self.endpoint}"


@dataclasses.dataclass(frozen=True)
class QueryOutcome:
    """What playing a :class:`TestQuery` gave."""

    query: TestQuery
    status: int  # the HTTP status; 0 if no answer came
    body: Any  # the JSON body (or the text of a body that is not JSON, or the connection error)
    ms: float
    passed: bool
    #: Why it did not pass ("" if it did).
    reason: str

    def line(self) -> str:
        """One line: verdict, endpoint, name, timing and what came back (shortened)."""
        verdict = "PASS" if self.passed else "FAIL"
        shown = self.reason if not self.passed else _short(self.body.get("response") if _is_dict(self.body) else None)
        return f"{verdict}  {self.query.where}  {self.query.name}  {self.ms:.1f} ms  {shown}"


def query_file_of(path: Path, project_dir: Path) -> tuple[str, str] | None:
    """``(service, endpoint)`` if ``path`` is a test query file of ``project_dir``, else ``None``."""
    try:
        relative = path.resolve().relative_to(project_dir.resolve() / TEST_QUERIES_DIR)
    except ValueError:
        return None
    if len(relative.parts) != 2 or relative.suffix != ".json":
        return None
    return relative.parts[0], relative.stem


def load_file(path: Path, service: str, endpoint: str) -> list[TestQuery]:
    """The queries of one file; raises :class:`TestQueryError` saying what is wrong with it."""
    for kind, value in (("service", service), ("endpoint", endpoint)):
        if not _ID.fullmatch(value):
            raise TestQueryError(f"{path}: {value!r} is not a valid {kind} id (test_queries/<service>/<endpoint>.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TestQueryError(f"{path}: not a JSON file: {exc}") from exc
    if not isinstance(data, list):
        raise TestQueryError(f'{path}: expected a list of {{"name", "q", "expect"?}}, got {type(data).__name__}')
    queries, names = [], set()
    for index, item in enumerate(data):
        where = f"{path}: query {index + 1}"
        if not isinstance(item, dict):
            raise TestQueryError(f'{where}: expected an object {{"name", "q", "expect"?}}, got {type(item).__name__}')
        unknown = sorted(set(item) - {"name", "q", "expect"})
        if unknown:
            raise TestQueryError(f"{where}: unknown attribute(s) {', '.join(unknown)} (allowed: name, q, expect)")
        name = item.get("name", f"query {index + 1}")
        if not isinstance(name, str) or not name:
            raise TestQueryError(f"{where}: name must be a non-empty string")
        if name in names:
            raise TestQueryError(f"{where}: the name {name!r} is used twice")
        if "q" not in item:
            raise TestQueryError(f"{where} ({name}): q (the request body) is missing")
        names.add(name)
        queries.append(TestQuery(service, endpoint, name, item["q"], item.get("expect", _MISSING), path))
    return queries


def load_project(project_dir: Path) -> list[TestQuery]:
    """Every test query of ``project_dir``, file by file in name order."""
    root = project_dir / TEST_QUERIES_DIR
    queries: list[TestQuery] = []
    for path in sorted(root.glob("*/*.json")):
        located = query_file_of(path, project_dir)
        assert located is not None
        queries += load_file(path, *located)
    return queries


def play(query: TestQuery, base_url: str, headers: Mapping[str, str] | None = None) -> QueryOutcome:
    """POST the query to its endpoint's run route at ``base_url``; the outcome, timed."""
    service, endpoint = (urllib.parse.quote(part, safe="") for part in (query.service, query.endpoint))
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/public/api/v1/{service}/{endpoint}/run",
        data=json.dumps(query.q).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_S) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        ms = (time.perf_counter() - started) * 1000
        reason = getattr(exc, "reason", exc)
        return QueryOutcome(query, 0, str(reason), ms, False, f"no answer from {base_url}: {reason}")
    ms = (time.perf_counter() - started) * 1000
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return QueryOutcome(query, status, body, ms, *_verdict(query, status, body))


def _verdict(query: TestQuery, status: int, body: Any) -> tuple[bool, str]:
    if status != 200 or not _is_dict(body) or "response" not in body:
        if _is_dict(body) and "errorType" in body:
            return False, f"{status} {body['errorType']}: {body.get('message', '')}"
        return False, f"{status}: {_short(body)}"
    if query.has_expect and not same_json(body["response"], query.expect):
        return False, f"expected {_short(query.expect)}, got {_short(body['response'])}"
    return True, ""


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal as JSON sees them: numbers by value (``3 == 3.0``), but a boolean
    is no number (``true != 1``), and lists and objects item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
