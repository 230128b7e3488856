"""What a pipeline runs for TabPy: a function deployed with TabPy's client, or ``/evaluate``'s scripts.

Both run in pipelines like any endpoint, so a slow or crashing one never blocks the emulator (TabPy runs them
on its server's only event loop). A call's payload is the JSON of :data:`ARGS_KEY` (positional arguments,
TabPy's ``{"data": [...]}``) or of keyword arguments; an evaluate call's is ``{"script", "data"}``.
"""

from __future__ import annotations

import json
import os
import textwrap
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .._errors import BadRequest, FunctionError
from .._invocation import InvocationContext, encode_result
from ._tabpy_objects import load_query_object

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
        return encode_result(result)

    return handle


class TabPyQuery:
    """The ``tabpy`` object of an evaluated script: ``tabpy.query(name, *args, **kwargs)`` queries a deployed
    function through the emulator and returns TabPy's whole answer (``["response"]`` is the result)."""

    def __init__(self, url: str, token: str):
        self._url = url.rstrip("/")
        self._token = token

    def query(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if args and kwargs:
            raise ValueError(
                "Mixing of keyword arguments and positional arguments when querying an endpoint is not supported."
            )
        data = list(args) if args else kwargs
        request = urllib.request.Request(
            f"{self._url}/query/{urllib.parse.quote(name, safe='')}",
            data=json.dumps({"data": data}).encode(),
            headers={"Content-Type": "application/json", TOKEN_HEADER: self._token},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            exc.close()
            raise RuntimeError(f"querying {name!r} failed with {exc.code}: {body}") from None


def compile_script(script: str, names: list[str]) -> Callable[..., Any]:
    """The script as the body of ``def _user_script(tabpy, <names>)`` (TabPy's wrapper); raises
    ``SyntaxError`` as compiling it does."""
    source = f"def _user_script(tabpy{''.join(', ' + name for name in names)}):\n{textwrap.indent(script, '    ')}\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<evaluate>", "exec"), namespace)
    function: Callable[..., Any] = namespace["_user_script"]
    return function


def evaluate_handler() -> Handle:
    """Run scripts: each call compiles its script and calls it with the ``_argN`` values and ``tabpy``."""
    tabpy = TabPyQuery(os.environ.get(URL_VARIABLE, ""), os.environ.get(TOKEN_VARIABLE, ""))

    def handle(payload: bytes, context: InvocationContext, lambda_event: bool) -> bytes:
        request = json.loads(payload)
        data = request.get("data") or {}
        names = sorted(data, key=lambda name: int(name[4:]))  # _arg1, _arg2, ... (checked by the emulator)
        try:
            function = compile_script(request["script"], names)
            result = function(tabpy, *(data[name] for name in names))
        except Exception as exc:
            raise _failure(exc) from exc
        return encode_result(result)

    return handle
