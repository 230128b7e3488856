"""TabPy 2.x's server API (DESIGN.md section 5), over the functions :class:`~._tabpy_service.TabPyFunctions`
serves: ``/info``, ``/status``, ``/endpoints``, ``/endpoints/{name}``, ``/configurations/...``, ``/query/{name}``
and ``/evaluate``, with TabPy's statuses, messages and ``{"message", "info"}`` error bodies, so that TabPy's own
client works unchanged. Where lambdapool differs, on purpose:

- a deployed function (and ``/evaluate``) runs in a pool of its own, never on the server's thread;
- deploying and ``/evaluate`` are off unless the emulator runs with ``--allow-deploy --pwd-file FILE``;
- a password containing ``:`` authenticates (TabPy splits the credentials at every ``:``);
- ``PUT /endpoints/{name}/archive`` takes the pickle over HTTP (TabPy's client writes it into the server's
  upload directory, which only a client on the same machine can): :mod:`lambdapool.tabpy` uses it;
- a pickle is only read from ``<upload destination>/endpoints/<name>/<version>``, where TabPy's client stages
  it (TabPy copies any directory ``src_path`` names);
- ``/evaluate`` without ``data`` runs the script without arguments (TabPy answers 500, a bug);
- results carry NaN and infinities as ``null`` on ``/query`` too (TabPy sends ``NaN``, which its own client
  cannot read);
- a deleted function stops answering at once (TabPy's keeps answering until it restarts);
- ``/query`` with an empty body says ``JSONDecodeError``, a wrong method is a JSON 405, a trailing slash is
  accepted (TabPy: an odd ``AttributeError``, HTML 405 and 404).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import shutil
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from werkzeug.wrappers import Request, Response

from ... import __version__
from ..._errors import FunctionError, LambdapoolError, PayloadTooLarge, Timeout
from ..http._requests import read_body
from ..pool._calls import Superseded
from ..pool._runtime import EndpointRuntime
from ._auth import PasswordFile, basic_credentials
from ._pipeline import ARGS_KEY, TOKEN_HEADER
from ._service import LOAD_FAILED, Loaded, TabPyFunctions
from ._store import ARCHIVE_NAME, MAX_ARCHIVE_BYTES, Deployed, check_name

log = logging.getLogger("lambdapool.tabpy")

#: The TabPy version whose API this is (what ``/info`` reports as ``server_version``).
TABPY_API_VERSION = "2.16.0"
REALM = 'Basic realm="TabPy Server"'
EVALUATE_DISABLED = "Ad-hoc scripts have been disabled on this analytics extension, please contact your administrator."
DEPLOY_DISABLED = (
    "Deploying functions has been disabled on this analytics extension, please contact your administrator."
)
DEPLOY_DISABLED_INFO = "start lambdapool local with --allow-deploy --pwd-file FILE to deploy functions"
#: The most a management request's JSON body may weigh (a record, not a model).
MAX_RECORD_BYTES = 2**20
#: The most a ``/query`` or ``/evaluate`` body may weigh: TabPy's default (``TABPY_MAX_REQUEST_SIZE_MB``).
MAX_REQUEST_BYTES = 100 * 2**20


class TabPyHost(Protocol):
    """What TabPy's routes need from the emulator."""

    tabpy: TabPyFunctions | None
    tabpy_token: str
    passwords: PasswordFile | None
    allow_deploy: bool
    max_body_bytes: int


@dataclasses.dataclass
class TabPyAnswer(Exception):
    """An answer ends a TabPy view early (an error, or a refusal)."""

    status: int
    message: str
    info: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def response(self) -> Response:
        return tabpy_response({"message": self.message, "info": self.info or {}}, self.status, self.headers)


def tabpy_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as TabPy answers JSON (bytes as they are)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(data, status=status, headers=headers, content_type="application/json")


def _loads(raw: bytes) -> Any:
    """``raw`` parsed; raises ``ValueError`` for what is not JSON, nested too deeply included."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _read(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes: TabPy's 413 otherwise."""
    try:
        return read_body(request, limit)
    except PayloadTooLarge:
        size = request.content_length if request.content_length is not None else f"over {limit}"
        raise TabPyAnswer(
            413, f"Request with size {size} exceeded limit of {limit} (bytes).", "Request Entity Too Large"
        ) from None


def _format(error: LambdapoolError) -> str:
    """TabPy's ``"<ExceptionClass> : <message>"`` for an error."""
    return f"{error.type_name()} : {error.message}"


class TabPyViews:
    """TabPy's routes over a :class:`TabPyHost`; :meth:`routes` gives ``(pattern, methods, view)``."""

    def __init__(self, host: TabPyHost):
        self.host = host
        self._deploys = threading.Lock()  # one deploy at a time, as TabPy does

    def routes(self) -> list[tuple[str, frozenset[str], Callable[..., Response]]]:
        name = r"(?P<name>[^/]+)"
        table: list[tuple[str, set[str], Callable[..., Response]]] = [
            (r"/info", {"GET"}, self.info),
            (r"/status", {"GET"}, self.status),
            (r"/endpoints", {"GET", "POST"}, self.endpoints),
            (rf"/endpoints/{name}/archive", {"PUT"}, self.archive),
            (rf"/endpoints/{name}", {"GET", "PUT", "DELETE"}, self.endpoint),
            (r"/configurations/endpoint_upload_destination", {"GET"}, self.upload_destination),
            (rf"/query/{name}", {"GET", "POST"}, self.query),
            (r"/evaluate", {"POST"}, self.evaluate),
        ]
        every = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"})
        return [(pattern, every, self._guarded(methods, view)) for pattern, methods, view in table]

    # -- the frame of every view ----------------------------------------------------------------------

    def _guarded(self, methods: set[str], view: Callable[..., Response]) -> Callable[..., Response]:
        """``view`` behind TabPy's checks: its methods (OPTIONS answered ``{}``), its credentials, and its
        errors answered as TabPy's ``{"message", "info"}``."""
        query = view == self.query

        def guarded(request: Request, **arguments: str) -> Response:
            try:
                if request.method == "OPTIONS" and not query:
                    return tabpy_response({})
                self._authenticate(request, internal=query)
                if request.method == "OPTIONS":
                    return tabpy_response({})
                if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
                    raise TabPyAnswer(405, "Method Not Allowed", {"allowed": sorted(methods)})
                return view(request, **arguments)
            except TabPyAnswer as answer:
                return answer.response()
            except LambdapoolError as error:  # a queue full...
                request.environ["lambdapool.error"] = error
                return TabPyAnswer(error.status, error.message, error.type_name(), error.headers()).response()
            except Exception as exc:  # answered as TabPy answers what it did not expect, and logged
                log.exception("TabPy API: internal error answering %s %s", request.method, request.path)
                return TabPyAnswer(500, "Error processing request", f"{type(exc).__name__} : {exc}").response()

        return guarded

    def _functions(self) -> TabPyFunctions:
        functions = self.host.tabpy
        if functions is None:
            raise TabPyAnswer(503, "the emulator is not serving yet", {})
        return functions

    def _authenticate(self, request: Request, *, internal: bool = False) -> None:
        """TabPy's checks: with a password file, a user's Basic credentials (401 otherwise); without one, no
        Basic credentials at all (406). ``/evaluate``'s pipelines query with the emulator's token instead."""
        authorization = request.headers.get("Authorization")
        if internal:
            token = request.headers.get(TOKEN_HEADER)
            if token is not None and hmac.compare_digest(token.encode(), self.host.tabpy_token.encode()):
                return
        passwords = self.host.passwords
        if passwords is None:
            if basic_credentials(authorization) is not None:  # what makes TabPy answer 406
                raise TabPyAnswer(
                    406,
                    "Username or password provided when authentication not available.",
                    "Not Acceptable",
                    {"WWW-Authenticate": REALM},
                )
            return
        if not passwords.check(authorization):
            raise TabPyAnswer(
                401, "Invalid credentials provided.", "Unauthorized request.", {"WWW-Authenticate": REALM}
            )

    def _deploying(self) -> TabPyFunctions:
        """The functions, if deploying is allowed (TabPy-style 404 otherwise)."""
        if not self.host.allow_deploy:
            raise TabPyAnswer(404, DEPLOY_DISABLED, DEPLOY_DISABLED_INFO)
        return self._functions()

    # -- service ---------------------------------------------------------------------------------------

    def info(self, request: Request) -> Response:
        functions = self._functions()
        features: dict[str, Any] = {}
        if self.host.passwords is not None:
            features["authentication"] = {"required": True, "methods": {"basic-auth": {}}}
        features.update({"evaluate_enabled": self.host.allow_deploy, "gzip_enabled": False, "arrow_enabled": False})
        return tabpy_response(
            {
                "description": "lambdapool: TabPy's API, each deployed function in a pool of its own",
                "creation_time": "0",
                "state_path": str(functions.store.root.resolve()),
                "server_version": TABPY_API_VERSION,
                "name": "TabPy Server",
                "versions": {"v1": {"features": features}},
                "lambdapool_version": __version__,
            }
        )

    def status(self, request: Request) -> Response:
        return tabpy_response(self._functions().status())

    def upload_destination(self, request: Request) -> Response:
        functions = self._deploying()
        return tabpy_response({"path": str(functions.store.staging.resolve())})

    # -- endpoints ------------------------------------------------------------------------------------

    def endpoints(self, request: Request) -> Response:
        if request.method == "POST":
            return self._add(request)
        deployed = self._functions().store.all()
        return tabpy_response({name: record.record() for name, record in deployed.items()})

    def endpoint(self, request: Request, name: str) -> Response:
        if request.method == "PUT":
            return self._update(request, name)
        if request.method == "DELETE":
            return self._delete(name)
        deployed = self._functions().store.get(name)
        if deployed is None:
            raise TabPyAnswer(404, "Unknown endpoint", f"Endpoint {name} is not found")
        return tabpy_response(deployed.record())

    def _add(self, request: Request) -> Response:
        functions = self._deploying()
        body = self._record_body(request)
        if not isinstance(body, dict) or "name" not in body:
            raise TabPyAnswer(400, "name is required to add an endpoint.")
        name = body["name"]
        with self._deploys:
            if isinstance(name, str) and functions.store.get(name) is not None:
                raise TabPyAnswer(400, f"endpoint {name} already exists.")
            self._check_name(name)
            deployed = _deployed_from(body, name, 1, None)
            loaded = self._deploy(functions, deployed, self._staged(functions, body, name))
        _wait_loaded(loaded)  # as TabPy answers once loading ended (not holding up other deploys meanwhile)
        return tabpy_response({name: deployed.record()}, 201)

    def _update(self, request: Request, name: str) -> Response:
        functions = self._deploying()
        body = self._record_body(request)
        loaded: Loaded | None = None
        with self._deploys:
            existing = functions.store.get(name)
            if existing is None:
                raise TabPyAnswer(404, f"endpoint {name} does not exist.")
            if not isinstance(body, dict):
                raise TabPyAnswer(400, "Failed to decode input body", "the body must be a JSON object")
            bump = bool(body.get("should_update_version"))
            deployed = _deployed_from(body, name, existing.version + (1 if bump else 0), existing)
            archive = self._staged(functions, body, name, needed=bump)
            if archive is not None:
                loaded = self._deploy(functions, deployed, archive)
            else:
                deployed.creation_time = existing.creation_time
                functions.update(deployed)
        if loaded is not None:
            _wait_loaded(loaded)
        return tabpy_response({name: deployed.record()})

    def _delete(self, name: str) -> Response:
        functions = self._deploying()
        with self._deploys:
            if not functions.remove(name):
                raise TabPyAnswer(404, f"endpoint {name} does not exist.")
            shutil.rmtree(functions.store.staging / "endpoints" / name, ignore_errors=True)
        return Response(status=204)

    def archive(self, request: Request, name: str) -> Response:
        """``PUT /endpoints/{name}/archive[?version=N]``: the pickle in the body, kept where TabPy's client would
        have written it; answers ``{"path", "version"}``, the ``src_path`` to register it with (``version``:
        the one a deploy gives, unless said)."""
        functions = self._deploying()
        self._check_name(name)
        existing = functions.store.get(name)
        text = request.args.get("version")
        if text is None:
            version = existing.version + 1 if existing is not None else 1
        elif text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1:
            version = int(text)
        else:
            raise TabPyAnswer(400, "version must be a whole number from 1", {"version": text[:20]})
        functions.store.clear_staged(name)  # one upload per name waits to be registered
        target = functions.store.staging_dir(name, version)
        _receive(request, target / ARCHIVE_NAME)
        return tabpy_response({"path": str(target.resolve()), "version": version})

    def _record_body(self, request: Request) -> Any:
        raw = _read(request, MAX_RECORD_BYTES)
        if not raw:
            raise TabPyAnswer(400, "Input body cannot be empty")
        try:
            return _loads(raw)
        except ValueError as exc:
            raise TabPyAnswer(400, "Failed to decode input body", str(exc)) from None

    @staticmethod
    def _check_name(name: Any) -> None:
        try:
            check_name(name)
        except ValueError as error:
            raise TabPyAnswer(400, str(error)) from None

    @staticmethod
    def _staged(functions: TabPyFunctions, body: dict[str, Any], name: str, *, needed: bool = True) -> Path | None:
        """The pickle ``body``'s ``src_path`` names (``None`` if not ``needed``: a PUT that keeps the version
        needs a ``src_path`` but does not read it, as TabPy's)."""
        src_path = body.get("src_path")
        if src_path is None:
            raise TabPyAnswer(400, "src_path is required to add/update an endpoint.")
        if not isinstance(src_path, str):
            raise TabPyAnswer(400, "src_path must be a string.")
        if not needed:
            return None
        try:
            return functions.store.staged_archive(src_path, name)
        except ValueError as error:
            raise TabPyAnswer(400, f"Invalid source path for endpoint {name}", str(error)) from None

    @staticmethod
    def _deploy(functions: TabPyFunctions, deployed: Deployed, archive: Path | None) -> Loaded:
        assert archive is not None
        try:
            return functions.deploy(deployed, archive)
        except ValueError as error:
            raise TabPyAnswer(400, f"Error when changing TabPy state: {error}") from None
        finally:
            shutil.rmtree(archive.parent, ignore_errors=True)  # kept in the state directory, or refused

    # -- calls ----------------------------------------------------------------------------------------

    def query(self, request: Request, name: str) -> Response:
        """``POST`` (or ``GET``, with the same body) ``/query/{name}`` with ``{"data": [args] | {kwargs}}``."""
        functions = self._functions()
        name = urllib.parse.unquote(name)  # decoded twice, as TabPy does
        raw = _read(request, MAX_REQUEST_BYTES)
        try:
            body = _loads(raw)
        except ValueError as exc:
            raise TabPyAnswer(400, f"{type(exc).__name__} : {exc}") from None
        if not isinstance(body, dict):
            raise TabPyAnswer(400, "RuntimeError : Input data must be a dictionary")
        if "data" not in body:
            raise TabPyAnswer(400, 'RuntimeError : Input data must be a dictionary with a key called "data"')
        entry = functions.get(name)
        if entry is None:
            raise TabPyAnswer(404, "UnknownURI", f"Endpoint '{name}' does not exist")
        data = body["data"]
        if not isinstance(data, (list, dict)):
            self._query_failed(
                name, f"Query parameter needs to be a dictionary or a list. Given value is of type {type(data)}"
            )
        if "method" in body:  # TabPy passes both as keyword arguments
            arguments: dict[str, Any] = {"data": data, "method": body["method"]}
        else:
            arguments = {ARGS_KEY: data} if isinstance(data, list) else data
        if entry.state()[0] == LOAD_FAILED:
            self._query_failed(name, f"There is no query object associated to the endpoint: {name}")
        for _attempt in range(3):  # a redeploy as the call arrived: the new version serves it
            runtime = entry.runtime if entry is not None else None
            if entry is None or runtime is None:
                break
            try:
                result = runtime.call(arguments)
            except Superseded:
                entry = functions.get(name)
                continue
            except LambdapoolError as error:
                request.environ["lambdapool.error"] = error
                if error.status >= 500:
                    self._query_failed(name, _format(error))
                raise
            request.environ["lambdapool.call"] = result.api_context
            version = json.dumps(entry.deployed.version).encode()
            model = json.dumps(name).encode()
            answer = b'{"response":%s,"version":%s,"model":%s,"uuid":"%s"}' % (
                result.result,
                version,
                model,
                str(uuid.uuid4()).encode(),
            )
            return tabpy_response(answer)
        self._query_failed(name, f"There is no query object associated to the endpoint: {name}")

    @staticmethod
    def _query_failed(name: str, error: str) -> NoReturn:
        raise TabPyAnswer(
            500, f"Error querying function '{name}'", {"uri": name, "error": error, "type": "QueryFailed"}
        )

    def evaluate(self, request: Request) -> Response:
        """``POST /evaluate`` with ``{"script", "data": {"_arg1": ...}}``: the script as the body of a function
        of ``_arg1.._argN`` (and ``tabpy``), run in ``/evaluate``'s pool, killed past the evaluate timeout."""
        if not self.host.allow_deploy:
            raise TabPyAnswer(404, EVALUATE_DISABLED)
        functions = self._functions()
        raw = _read(request, MAX_REQUEST_BYTES)
        try:
            body = _loads(raw)
        except ValueError as exc:
            raise TabPyAnswer(500, "Error processing script", f"{type(exc).__name__} : {exc}") from None
        if not isinstance(body, dict) or "script" not in body:
            raise TabPyAnswer(400, "Script is empty.")
        data = body.get("data")
        if data is None:
            data = {}  # TabPy fails with a 500 here (its bug): a script without arguments runs
        if not isinstance(data, dict):
            raise TabPyAnswer(400, "Script parameters need to be provided as a dictionary.")
        if sorted(data) != sorted(f"_arg{number}" for number in range(1, len(data) + 1)):
            raise TabPyAnswer(400, "Variables names should follow the format _arg1, _arg2, _argN")
        script = body["script"]
        if not isinstance(script, str):
            raise TabPyAnswer(400, "Script is empty.", "the script must be a string")
        runtime: EndpointRuntime | None = functions.evaluator
        if runtime is None:
            raise TabPyAnswer(503, "the evaluation pool is not running yet", {})
        try:
            result = runtime.call({"script": script, "data": data})
        except Timeout as error:
            request.environ["lambdapool.error"] = error
            timeout = functions.settings.evaluate_timeout_s
            raise TabPyAnswer(408, f"User defined script timed out. Timeout is set to {timeout} s.") from None
        except LambdapoolError as error:
            request.environ["lambdapool.error"] = error
            if error.status < 500:
                raise
            info = _format(error)
            if isinstance(error, FunctionError) and info == "KeyError : 'response'":
                raise TabPyAnswer(
                    404,
                    "Error processing script",
                    "The endpoint you're trying to query did not respond. Please make sure the endpoint exists "
                    "and the correct set of arguments are provided.",
                ) from None
            raise TabPyAnswer(500, "Error processing script", info) from None
        request.environ["lambdapool.call"] = result.api_context
        return tabpy_response(result.result)


#: How long a deploy's answer waits for the function to load (TabPy's client then polls /status).
LOAD_WAIT_S = 30.0


def _wait_loaded(loaded: Loaded) -> None:
    if loaded.runtime is not None:
        loaded.runtime.wait_loaded(LOAD_WAIT_S)


def _deployed_from(body: dict[str, Any], name: str, version: int, previous: Deployed | None) -> Deployed:
    """The record a POST (``previous`` None) or PUT body makes, checked as TabPy's state checks it: on a PUT,
    a missing or empty value keeps the previous one, except ``schema`` and ``is_public``, which it sets."""

    def kept(key: str, default: Any) -> Any:
        value = body.get(key)
        if value in (None, "", []) and previous is not None:
            return getattr(previous, key)
        return default if value is None else value

    kind = kept("type", None)
    if not isinstance(kind, str) or not kind:
        raise TabPyAnswer(400, "Error when changing TabPy state: endpoint type must be a string.")
    if kind != "model":
        raise TabPyAnswer(
            400, f"Error when changing TabPy state: endpoint type {kind!r} is not served here (only model)."
        )
    description = kept("description", "")
    if not isinstance(description, str):
        raise TabPyAnswer(400, "Error when changing TabPy state: description must be a string.")
    docstring = kept("docstring", Deployed.docstring)
    if not isinstance(docstring, str):
        raise TabPyAnswer(400, "Error when changing TabPy state: docstring must be a string.")
    dependencies = kept("dependencies", [])
    if not isinstance(dependencies, list):
        raise TabPyAnswer(400, "Error when changing TabPy state: dependencies must be a list.")
    methods = kept("methods", [])
    return Deployed(
        name=name,
        version=version,
        description=description,
        docstring=docstring,
        type=kind,
        methods=methods if isinstance(methods, list) else [],
        dependencies=dependencies,
        schema=body.get("schema"),
        is_public=bool(body.get("is_public", False)),
    )


def _receive(request: Request, target: Path) -> None:
    """Stream the request body into ``target`` (at most :data:`MAX_ARCHIVE_BYTES`), atomically."""
    declared = request.content_length
    if declared is not None and declared > MAX_ARCHIVE_BYTES:
        raise PayloadTooLarge(
            f"Request with size {declared} exceeded limit of {MAX_ARCHIVE_BYTES} (bytes).", "Request Entity Too Large"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    received = 0
    try:
        with partial.open("wb") as stream:
            while True:
                chunk = request.stream.read(2**20)
                if not chunk:
                    break
                received += len(chunk)
                if received > MAX_ARCHIVE_BYTES:
                    raise PayloadTooLarge(
                        f"Request exceeded limit of {MAX_ARCHIVE_BYTES} (bytes).", "Request Entity Too Large"
                    )
                stream.write(chunk)
        if declared is not None and received < declared:
            raise TabPyAnswer(400, "the request body ended early", {"received": received, "declared": declared})
        if received == 0:
            raise TabPyAnswer(400, "Input body cannot be empty", "send the pickle of the deployed object")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
