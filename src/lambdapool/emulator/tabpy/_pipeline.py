"""What a pipeline runs for TabPy: a function deployed with TabPy's client, or ``/evaluate``'s scripts.

Both run in pipelines like any endpoint, so a slow or crashing one never blocks the emulator (TabPy runs them
on its server's only event loop). A call's payload is the JSON of :data:`ARGS_KEY` (positional arguments,
TabPy's ``{"data": [...]}``) or of keyword arguments; an evaluate call's is ``{"script", "data"}``.
"""

from __future__ import annotations

import datetime
import importlib
import importlib.util
import json
import logging
import math
import os
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from ..._errors import BadRequest, FunctionError
from ..._invocation import InvocationContext, encode_result
from ._objects import load_query_object

#: The one attribute of a call's arguments that carries positional arguments (TabPy's ``{"data": [...]}``).
ARGS_KEY = "__tabpy_args__"
#: Where an evaluate pipeline finds the emulator (for ``tabpy.query``), and the token that lets it query.
URL_VARIABLE = "LAMBDAPOOL_TABPY_URL"
TOKEN_VARIABLE = "LAMBDAPOOL_TABPY_TOKEN"
#: The header carrying that token.
TOKEN_HEADER = "X-Lambdapool-Tabpy-Token"

Handle = Callable[[bytes, InvocationContext, bool], bytes]


def _split(arguments: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(arguments, dict) and set(arguments) == {ARGS_KEY} and isinstance(arguments[ARGS_KEY], list):
        return list(arguments[ARGS_KEY]), {}
    if isinstance(arguments, dict):
        return [], dict(arguments)
    raise BadRequest("the arguments must be a JSON object (or a list of positional arguments)")


def _failure(exc: BaseException) -> FunctionError:
    return FunctionError.of(exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def deployed_handler(archive: str) -> Handle:
    """Load the deployed object (its init: what TabPy calls loading the model) and answer its queries."""
    with open(archive, "rb") as stream:
        deployed = load_query_object(stream.read())
    if not callable(getattr(deployed, "query", None)):
        raise TypeError(f"the deployed object ({type(deployed).__name__}) has no query method")

    def handle(payload: bytes, context: InvocationContext, lambda_event: bool) -> bytes:
        args, kwargs = _split(json.loads(payload) if payload else {})
        try:
            result = deployed.query(*args, **kwargs)
        except Exception as exc:
            raise _failure(exc) from exc
        return encode_result(tabpy_json(result))

    return handle


class TabPyQuery:
    """The ``tabpy`` object of an evaluated script: ``tabpy.query(name, *args, **kwargs)`` queries a deployed
    function through the emulator and returns TabPy's whole answer, whatever its status, as TabPy does
    (``["response"]`` is the result; an error's answer has none, which a script sees as ``KeyError``)."""

    def __init__(self, url: str, token: str):
        self._url = url.rstrip("/")
        self._token = token

    def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        data = list(args) if args else kwargs  # as TabPy's: positional arguments win
        request = urllib.request.Request(
            f"{self._url}/query/{urllib.parse.quote(name, safe='')}",
            data=json.dumps({"data": data}).encode(),
            headers={"Content-Type": "application/json", TOKEN_HEADER: self._token},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_S) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
        return json.loads(body)


#: How long ``tabpy.query`` waits for an answer (the script's own timeout ends it sooner).
QUERY_TIMEOUT_S = 900


class _LazyModule:
    """A module imported when a script first uses it (TabPy's scripts find ``pandas``, ``requests``... without
    importing them; importing them up front would slow every evaluate pipeline's start)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


def script_globals() -> dict[str, Any]:
    """What a script finds without importing it: the names TabPy's evaluation handler's module has."""
    namespace: dict[str, Any] = {
        "__name__": "tabpy_evaluate",
        "json": json,
        "logging": logging,
        "uuid": uuid,
        "timedelta": datetime.timedelta,
    }
    for name, module in (("pandas", "pandas"), ("requests", "requests"), ("simplejson", "simplejson")):
        if importlib.util.find_spec(module) is not None:
            namespace[name] = _LazyModule(module)
    return namespace


def compile_script(script: str, names: list[str], namespace: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The script as the body of ``def _user_script(tabpy, <names>)``, each line indented by one space as
    TabPy's wrapper does (so a script indented consistently works); raises ``SyntaxError`` as compiling it
    does."""
    lines = "".join(f" {line}\n" for line in script.splitlines())
    source = f"def _user_script(tabpy{''.join(', ' + name for name in sorted(names))}):\n{lines}"
    namespace = namespace if namespace is not None else script_globals()
    exec(compile(source, "<string>", "exec"), namespace)
    function: Callable[..., Any] = namespace.pop("_user_script")
    return function


def tabpy_json(value: Any) -> Any:
    """``value`` as TabPy answers it: NaN and infinities as null (TabPy's ``ignore_nan``), tuples as lists, a
    pandas DataFrame as ``to_dict(orient="list")``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: tabpy_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tabpy_json(item) for item in value]
    if type(value).__name__ == "DataFrame" and callable(getattr(value, "to_dict", None)):
        return tabpy_json(value.to_dict(orient="list"))
    return value


def evaluate_handler() -> Handle:
    """Run scripts: each call compiles its script and calls it with the ``_argN`` values (by name) and
    ``tabpy``; the emulator has checked the request's shape."""
    tabpy = TabPyQuery(os.environ.get(URL_VARIABLE, ""), os.environ.get(TOKEN_VARIABLE, ""))

    def handle(payload: bytes, context: InvocationContext, lambda_event: bool) -> bytes:
        request = json.loads(payload)
        data = request.get("data") or {}
        try:
            function = compile_script(request["script"], list(data))
            result = function(tabpy, **data)
        except Exception as exc:
            raise _failure(exc) from exc
        return encode_result(tabpy_json(result))

    return handle
