"""Deploy a function to lambdapool's TabPy API from anywhere: the pickle goes over HTTP.

TabPy's own client writes the pickle of a deployed function into the server's upload directory, so it only
works on the server's machine (or with a shared filesystem). :func:`deploy` sends it with
``PUT /endpoints/{name}/archive`` instead, then registers it as TabPy's client does, so it works from any
machine that reaches the server. It needs only ``cloudpickle`` (not the ``tabpy`` package)::

    from lambdapool.tabpy import deploy, query

    def add(x, y):
        "Adds x and y"
        return x + y

    deploy("http://127.0.0.1:8000", "add", add, "Adds two numbers", auth=("alice", "secret"))
    query("http://127.0.0.1:8000", "add", 1, 2, auth=("alice", "secret"))  # -> 3

The function is pickled by value when it is defined in ``__main__`` (a script, a notebook), else by
reference: its module must then be importable by the server's pipelines. As with TabPy, the server must run
the same Python minor version as the client (the pickle holds bytecode).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["TabPyError", "deploy", "query", "remove"]


class TabPyError(RuntimeError):
    """The server refused a request: ``status`` and TabPy's ``{"message", "info"}`` body."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        if isinstance(body, dict) and "message" in body:
            text = f"{status} {body['message']}" + (f": {body['info']}" if body.get("info") else "")
        else:
            text = f"{status} {body!r}"
        super().__init__(text)


def _request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    auth: tuple[str, str] | None,
    content_type: str = "application/json",
    timeout: float = 120.0,
) -> Any:
    headers = {"Content-Type": content_type}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url.rstrip("/") + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data = answer.read()
    except urllib.error.HTTPError as error:
        data = error.read()
        error.close()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        raise TabPyError(error.code, parsed) from None
    return json.loads(data) if data else None


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def deploy(
    url: str,
    name: str,
    function: Callable[..., Any],
    description: str | None = None,
    *,
    schema: Any = None,
    override: bool = False,
    is_public: bool = False,
    auth: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Deploy ``function`` as TabPy endpoint ``name`` on the server at ``url`` and return its record
    (``/endpoints/{name}``); raises :class:`TabPyError` if the server refuses it, ``RuntimeError`` if the
    name is taken (without ``override``) or the function fails to load there."""
    import cloudpickle

    from .emulator.tabpy._objects import DEFAULT_DOCSTRING, CustomQueryObject

    existing = _request(url, "GET", "/endpoints", auth=auth) or {}
    if name in existing and not override:
        raise RuntimeError(
            f'An endpoint with that name ({name}) already exists. Use "override = True" to force update an '
            "existing endpoint."
        )
    if description is None:
        description = (function.__doc__ or "").strip()
    deployed = CustomQueryObject(function, description)
    staged = _request(
        url,
        "PUT",
        f"/endpoints/{_quoted(name)}/archive",
        cloudpickle.dumps(deployed),
        auth=auth,
        content_type="application/octet-stream",
    )
    record = {
        "name": name,
        "description": description,
        "docstring": (function.__doc__ or "").strip() or DEFAULT_DOCSTRING,
        "type": "model",
        "methods": [{"method": "query"}],
        "dependencies": [],
        "src_path": staged["path"],
        "is_public": is_public,
        "schema": None if schema is None else str(schema),  # TabPy's client sends it as a string
    }
    if name in existing:
        answer = _request(
            url,
            "PUT",
            f"/endpoints/{_quoted(name)}",
            json.dumps({**record, "should_update_version": True}).encode(),
            auth=auth,
        )
    else:
        answer = _request(url, "POST", "/endpoints", json.dumps(record).encode(), auth=auth)
    status = (_request(url, "GET", "/status", auth=auth) or {}).get(name, {})
    if status.get("status") == "LoadFailed":
        raise RuntimeError(f"LoadFailed: {status.get('last_error')}")
    result: dict[str, Any] = answer[name]
    return result


def query(url: str, name: str, *args: Any, auth: tuple[str, str] | None = None, **kwargs: Any) -> Any:
    """Call endpoint ``name`` with positional or keyword arguments and return its result (``["response"]``
    of TabPy's answer); raises :class:`TabPyError` for an error answer."""
    if args and kwargs:
        raise ValueError("query takes positional or keyword arguments, not both (as TabPy's client)")
    data = list(args) if args else kwargs
    answer = _request(url, "POST", f"/query/{_quoted(name)}", json.dumps({"data": data}).encode(), auth=auth)
    return answer["response"]


def remove(url: str, name: str, *, auth: tuple[str, str] | None = None) -> None:
    """Remove endpoint ``name``; raises :class:`TabPyError` if there is none."""
    _request(url, "DELETE", f"/endpoints/{_quoted(name)}", auth=auth)
