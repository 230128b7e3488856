"""The function-endpoint model: services, endpoints, pools, parameter binding and invocation.

Standard library only: this module is imported inside every pipeline and every Lambda package, and knows
nothing of Chalice, Werkzeug or processes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import inspect
import json
import logging
import os
import re
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ._errors import BadRequest, FunctionError, LambdapoolError, OutputMismatch, ResultNotSerializable

__all__ = [
    "Endpoint",
    "InvocationContext",
    "ParameterSpec",
    "Pool",
    "Service",
    "Trigger",
    "call_endpoint",
    "call_trigger",
    "encode_result",
    "load_pool_override",
    "parse_body",
]

F = TypeVar("F", bound=Callable[..., Any])

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
#: Marks a Lambda event that carries a task submitted through ``/submit`` (``{TASK_KEY: {...}, "arguments"}``).
TASK_KEY = "__lambdapool_task__"
#: The states a task (``/submit``) never leaves.
TASK_FINAL_STATES = frozenset({"DONE", "FAILED", "TIMEOUT", "CANCELLED"})


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC timestamp (millisecond precision) tasks are stamped with."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


#: Injected by lambdapool, never bound from the request body.
RESERVED_PARAMETERS = frozenset({"context"})
#: Lambda's limits, so that what is declared locally deploys unchanged.
LAMBDA_TIMEOUT_S_RANGE = (1, 900)
LAMBDA_MEMORY_MB_RANGE = (128, 10240)


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is invalid: it must be a non-empty string of A-Z, a-z, 0-9, '_' or '-'")
    return value


def _check_int(owner: str, name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Pool:
    """How many pipelines serve an endpoint and how requests wait for them (Dataiku's pool semantics).

    - ``floor``: pipelines started when the endpoint loads (0 scales to zero, as Lambda does);
    - ``ceil``: the most pipelines at once;
    - ``cruise``: after a burst, once no request is pending, pipelines above ``cruise`` are retired;
    - ``queue``: how many requests may wait, first come first served, while ``ceil`` pipelines are busy
      (0 rejects at once, Lambda's synchronous behaviour);
    - ``timeout_ms``: how long, in milliseconds, a request may wait in the queue.

    Raises ``ValueError`` unless all are integers with ``0 <= floor <= cruise <= ceil``, ``ceil >= 1``,
    ``queue >= 0`` and ``timeout_ms >= 0``.
    """

    floor: int = 1
    ceil: int = 8
    cruise: int = 2
    queue: int = 16
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        _check_int("Pool", "floor", self.floor, 0)
        _check_int("Pool", "ceil", self.ceil, 1)
        _check_int("Pool", "cruise", self.cruise, 0)
        _check_int("Pool", "queue", self.queue, 0)
        _check_int("Pool", "timeout_ms", self.timeout_ms, 0)
        if not self.floor <= self.cruise <= self.ceil:
            raise ValueError(
                f"Pool: floor <= cruise <= ceil must hold, got floor={self.floor}, cruise={self.cruise}, "
                f"ceil={self.ceil}"
            )

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "pool override") -> Pool:
        """A copy with Dataiku-style keys replaced (``floor``, ``ceil``, ``cruise``, ``queue``, ``timeout``).

        ``timeout_ms`` is accepted as a synonym of ``timeout``. Raises ``ValueError`` naming ``source``
        for unknown keys or an invalid result.
        """
        known = {"floor", "ceil", "cruise", "queue", "timeout", "timeout_ms"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown pool setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = self.to_dict()
        for key, value in overrides.items():
            values["timeout_ms" if key == "timeout" else key] = value
        try:
            return Pool(**values)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc


def load_pool_override(project_dir: str | os.PathLike[str], service_id: str, endpoint_id: str, pool: Pool) -> Pool:
    """Apply ``config/services/<SERVICE_ID>/<ENDPOINT_ID>.json`` from ``project_dir`` to ``pool``, if present.

    The file holds ``{"pool": {"floor": 1, "ceil": 8, "cruise": 2, "queue": 16, "timeout": 10000}}``; any
    subset of keys may be given. Raises ``ValueError`` if the file is not valid JSON or its pool is invalid.
    """
    path = Path(project_dir) / "config" / "services" / service_id / f"{endpoint_id}.json"
    if not path.is_file():
        return pool
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("pool", {}), dict):
        raise ValueError(f'{path}: expected an object like {{"pool": {{"floor": 1, "ceil": 8, ...}}}}')
    return pool.with_overrides(document.get("pool", {}), source=str(path))


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """What a function accepts from a request body: named parameters and whether ``**kwargs`` takes the rest.

    A plain-data description (it crosses process boundaries as JSON), built from a signature by
    :meth:`from_function`.
    """

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    var_keyword: bool = False
    wants_context: bool = False

    @classmethod
    def from_function(cls, function: Callable[..., Any], where: str, trigger: bool = False) -> ParameterSpec:
        """Read ``function``'s signature; raises ``ValueError`` for parameters a JSON object cannot bind, or,
        for a trigger endpoint (``trigger``), for anything but ``event`` and ``context`` without a default."""
        required: list[str] = []
        optional: list[str] = []
        var_keyword = wants_context = False
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ValueError(
                    f"{where}: parameter {parameter.name!r} is positional-only; it cannot be bound by name"
                )
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                raise ValueError(f"{where}: *{parameter.name} cannot be bound from a JSON object; use **kwargs")
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                var_keyword = True
            elif parameter.name in RESERVED_PARAMETERS:
                wants_context = True
            elif parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
            else:
                optional.append(parameter.name)
        if trigger:
            if required != ["event"]:
                raise ValueError(f"{where}: a trigger endpoint takes (event) or (event, context), got {required}")
            return cls(("event",), (), False, wants_context)
        return cls(tuple(required), tuple(optional), var_keyword, wants_context)

    def describe(self) -> str:
        """The expected parameters, as error messages name them."""
        parts = [*self.required, *(f"{name} (optional)" for name in self.optional)]
        if self.var_keyword:
            parts.append("any other attribute (**kwargs)")
        return ", ".join(parts) if parts else "no parameters"

    def bind(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments for a call with ``payload``; raises :class:`BadRequest` if they do not bind."""
        problems: list[str] = []
        missing = [name for name in self.required if name not in payload]
        if missing:
            problems.append("missing required parameter(s): " + ", ".join(missing))
        reserved = sorted(RESERVED_PARAMETERS.intersection(payload))
        if reserved:
            problems.append("reserved parameter(s) cannot be sent: " + ", ".join(reserved))
        if not self.var_keyword:
            known = set(self.required) | set(self.optional)
            unexpected = sorted(name for name in payload if name not in known and name not in RESERVED_PARAMETERS)
            if unexpected:
                problems.append("unexpected parameter(s): " + ", ".join(unexpected))
        if problems:
            message = "; ".join(problems)
            raise BadRequest(message, f"{message}. Expected parameters: {self.describe()}")
        return dict(payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "optional": list(self.optional),
            "varKeyword": self.var_keyword,
            "wantsContext": self.wants_context,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParameterSpec:
        return cls(
            tuple(data["required"]),
            tuple(data["optional"]),
            bool(data["varKeyword"]),
            bool(data["wantsContext"]),
        )


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_EVENT = re.compile(r"s3:[A-Za-z]+(:[A-Za-z*]+)*")


@dataclasses.dataclass(frozen=True)
class Trigger:
    """What fires a trigger endpoint: a schedule (``expression``) or S3 object events in ``bucket``."""

    kind: str  # "schedule" or "s3"
    expression: str = ""
    bucket: str = ""
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["events"] = list(self.events)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trigger:
        return cls(**{**data, "events": tuple(data.get("events", ()))})


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One function endpoint of a service: the function, its pool and its limits.

    ``timeout_s`` and ``memory_mb`` are Lambda's ``lambda_timeout`` and ``lambda_memory_size``; ``outputs``
    names the items of a returned tuple; ``folders`` are paths (relative to the project directory) handed to
    the function as ``context.folders``.
    """

    service_id: str
    endpoint_id: str
    function: Callable[..., Any]
    pool: Pool
    timeout_s: int
    memory_mb: int
    description: str
    outputs: tuple[str, ...] | None
    folders: tuple[str, ...]
    parameters: ParameterSpec
    inline: bool = False
    trigger: Trigger | None = None

    @property
    def lambda_name(self) -> str:
        """The Chalice function name: ``{service}-{endpoint}``."""
        return f"{self.service_id}-{self.endpoint_id}"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (what the emulator needs without importing the function)."""
        return {
            "serviceId": self.service_id,
            "endpointId": self.endpoint_id,
            "kind": self.trigger.kind if self.trigger is not None else "function",
            "pool": self.pool.to_dict(),
            "timeoutS": self.timeout_s,
            "memoryMb": self.memory_mb,
            "description": self.description,
            "outputs": list(self.outputs) if self.outputs is not None else None,
            "folders": list(self.folders),
            "parameters": self.parameters.to_dict(),
            "inline": self.inline,
            "trigger": self.trigger.to_dict() if self.trigger is not None else None,
        }


class Service:
    """A named group of endpoints (Dataiku's API service).

    ``service_id`` matches ``[A-Za-z0-9_-]+``. ``api_keys``, when given, are the keys callers must present
    (HTTP Basic with the key as user name, or ``Authorization: Bearer <key>``). Raises ``ValueError`` for an
    invalid id or keys that are not non-empty strings.
    """

    def __init__(self, service_id: str, description: str = "", api_keys: Iterable[str] | None = None):
        self.service_id = _check_id("Service id", service_id)
        self.description = description
        keys = tuple(api_keys) if api_keys is not None else ()
        if any(not isinstance(key, str) or not key for key in keys):
            raise ValueError(f"Service {service_id!r}: api_keys must be non-empty strings")
        self.api_keys: tuple[str, ...] = keys
        self._endpoints: dict[str, Endpoint] = {}

    def __repr__(self) -> str:
        return f"Service({self.service_id!r}, endpoints={list(self._endpoints)})"

    @property
    def endpoints(self) -> Mapping[str, Endpoint]:
        """Endpoints by id, in declaration order."""
        return dict(self._endpoints)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        """The endpoint ``endpoint_id``; raises ``KeyError`` if there is none."""
        return self._endpoints[endpoint_id]

    def function(
        self,
        function: F | None = None,
        *,
        endpoint_id: str | None = None,
        pool: Pool | None = None,
        timeout_s: int = 60,
        memory_mb: int = 128,
        description: str | None = None,
        outputs: Sequence[str] | None = None,
        folders: Sequence[str] = (),
        inline: bool = False,
    ) -> Any:
        """Declare a function endpoint; usable as ``@svc.function`` or ``@svc.function(...)``.

        The JSON body's attributes bind to the function's parameters; ``context`` is injected. On AWS the
        endpoint gets its own Lambda function, unless ``inline=True``: it then runs inside the API handler
        (no extra hop, but no pool of its own: its ``pool``, ``timeout_s`` and ``memory_mb`` are not
        applied there). Returns the function unchanged. Raises ``ValueError`` for an invalid or duplicate
        id, an invalid pool, limits outside Lambda's (``timeout_s`` 1..900, ``memory_mb`` 128..10240),
        invalid ``outputs`` or a signature a JSON object cannot bind.
        """

        register = self._decorator(
            endpoint_id=endpoint_id,
            pool=pool,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            description=description,
            outputs=outputs,
            folders=folders,
            inline=inline,
        )
        return register(function) if function is not None else register

    def schedule(
        self,
        expression: str,
        *,
        endpoint_id: str | None = None,
        pool: Pool | None = None,
        timeout_s: int = 60,
        memory_mb: int = 128,
        description: str | None = None,
    ) -> Callable[[F], F]:
        """Declare a scheduled endpoint: ``fn(event)`` runs on an EventBridge ``rate()`` or ``cron()``
        expression (``event`` is shaped like Chalice's ``CloudWatchEvent``). Raises ``ValueError`` for an
        invalid expression, and as :meth:`function` does."""
        from ._schedule import parse_schedule

        parsed = parse_schedule(expression)
        trigger = Trigger("schedule", expression=parsed.expression)
        return self._trigger_decorator(trigger, endpoint_id, pool, timeout_s, memory_mb, description)

    def on_s3_event(
        self,
        bucket: str,
        *,
        prefix: str = "",
        suffix: str = "",
        events: Sequence[str] | None = None,
        endpoint_id: str | None = None,
        pool: Pool | None = None,
        timeout_s: int = 60,
        memory_mb: int = 128,
        description: str | None = None,
    ) -> Callable[[F], F]:
        """Declare an S3-triggered endpoint: ``fn(event)`` runs for each object event in ``bucket`` whose key
        starts with ``prefix`` and ends with ``suffix`` (``event`` has ``.bucket`` and ``.key`` like Chalice's
        ``S3Event``). ``events`` defaults to ``["s3:ObjectCreated:*"]``. Raises ``ValueError`` for an invalid
        bucket name or event name, and as :meth:`function` does."""
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
            raise ValueError(f"on_s3_event: {bucket!r} is not a valid S3 bucket name")
        names = tuple(events) if events is not None else ("s3:ObjectCreated:*",)
        if (
            isinstance(events, str)
            or not names
            or not all(isinstance(e, str) and _S3_EVENT.fullmatch(e) for e in names)
        ):
            raise ValueError(f"on_s3_event: events must be S3 event names like 's3:ObjectCreated:*', got {events!r}")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise ValueError("on_s3_event: prefix and suffix must be strings")
        trigger = Trigger("s3", bucket=bucket, prefix=prefix, suffix=suffix, events=names)
        return self._trigger_decorator(trigger, endpoint_id, pool, timeout_s, memory_mb, description)

    def _trigger_decorator(
        self,
        trigger: Trigger,
        endpoint_id: str | None,
        pool: Pool | None,
        timeout_s: int,
        memory_mb: int,
        description: str | None,
    ) -> Callable[[F], F]:
        return self._decorator(
            endpoint_id=endpoint_id,
            pool=pool,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            description=description,
            outputs=None,
            folders=(),
            inline=False,
            trigger=trigger,
        )

    def _decorator(self, **settings: Any) -> Callable[[F], F]:
        """A decorator that registers the function it decorates with ``settings`` and returns it unchanged."""

        def register(fn: F) -> F:
            self._register(fn, **settings)
            return fn

        return register

    def _register(
        self,
        fn: Callable[..., Any],
        *,
        endpoint_id: str | None,
        pool: Pool | None,
        timeout_s: int,
        memory_mb: int,
        description: str | None,
        outputs: Sequence[str] | None,
        folders: Sequence[str],
        inline: bool,
        trigger: Trigger | None = None,
    ) -> Endpoint:
        if not callable(fn):
            raise ValueError(f"Service {self.service_id!r}: {fn!r} is not callable")
        name = _check_id("Endpoint id", endpoint_id if endpoint_id is not None else getattr(fn, "__name__", ""))
        where = f"endpoint {self.service_id}/{name}"
        if name in self._endpoints:
            raise ValueError(f"{where} is declared twice")
        if pool is None:
            pool = Pool()
        elif not isinstance(pool, Pool):
            raise ValueError(f"{where}: pool must be a lambdapool.Pool, got {pool!r}")
        _check_int(where, "timeout_s", timeout_s, *LAMBDA_TIMEOUT_S_RANGE)
        _check_int(where, "memory_mb", memory_mb, *LAMBDA_MEMORY_MB_RANGE)
        output_names: tuple[str, ...] | None = None
        if outputs is not None:
            if isinstance(outputs, str) or not all(isinstance(item, str) and item for item in outputs):
                raise ValueError(f"{where}: outputs must be a list of non-empty names, got {outputs!r}")
            output_names = tuple(outputs)
            if not output_names or len(set(output_names)) != len(output_names):
                raise ValueError(f"{where}: outputs must be a non-empty list of distinct names, got {outputs!r}")
        if isinstance(folders, str) or not all(isinstance(item, str) and item for item in folders):
            raise ValueError(f"{where}: folders must be a list of paths, got {folders!r}")
        parameters = ParameterSpec.from_function(fn, where, trigger=trigger is not None)
        endpoint = Endpoint(
            service_id=self.service_id,
            endpoint_id=name,
            function=fn,
            pool=pool,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            description=description if description is not None else inspect.getdoc(fn) or "",
            outputs=output_names,
            folders=tuple(folders),
            parameters=parameters,
            inline=bool(inline),
            trigger=trigger,
        )
        self._endpoints[name] = endpoint
        return endpoint


class InvocationContext:
    """What a function receives as its ``context`` parameter (modelled on Lambda's context object).

    ``deadline`` is a ``time.time()`` timestamp; ``folders`` are absolute paths of the endpoint's folders.
    """

    def __init__(
        self,
        *,
        request_id: str,
        service_id: str,
        endpoint_id: str,
        deadline: float,
        cold_start: bool,
        pipeline_id: str,
        folders: Sequence[str] = (),
        memory_mb: int = 128,
    ):
        self.request_id = self.aws_request_id = request_id
        self.service_id = service_id
        self.endpoint_id = endpoint_id
        self.function_name = f"{service_id}-{endpoint_id}"
        self.deadline = deadline
        self.cold_start = cold_start
        self.pipeline_id = pipeline_id
        self.folders = list(folders)
        self.memory_limit_in_mb = memory_mb
        self.logger = logging.getLogger(f"lambdapool.{service_id}.{endpoint_id}")

    @property
    def remaining_time_ms(self) -> int:
        """Milliseconds left before the call's ``timeout_s`` runs out."""
        return max(0, int((self.deadline - time.time()) * 1000))

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's name for :attr:`remaining_time_ms`."""
        return self.remaining_time_ms


def api_key_from_header(authorization: str | None) -> str | None:
    """The key a caller presents in an ``Authorization`` header: the HTTP Basic user name (what the
    Dataiku client sends, with an empty password) or a Bearer token."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def is_authorized(api_keys: Sequence[str], authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries one of ``api_keys`` (always true without keys).

    Every key is compared in constant time, whichever matches, so timing tells nothing about them.
    """
    if not api_keys:
        return True
    presented = (api_key_from_header(authorization) or "").encode()
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(presented, key.encode())
    return matched


def parse_body(raw: bytes | str | None) -> dict[str, Any]:
    """The request body as a JSON object; an absent or blank body is ``{}``.

    Raises :class:`BadRequest` for invalid UTF-8, malformed JSON or a JSON value that is not an object.
    """
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BadRequest("request body is not valid UTF-8", str(exc)) from exc
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest(
            f"request body must be a JSON object of parameters, got a JSON {type(value).__name__}",
            'request body must be a JSON object whose attributes are the function\'s parameters, e.g. {"x": 1}',
        )
    return value


def _shape_outputs(endpoint: Endpoint, result: Any) -> Any:
    names = endpoint.outputs
    if names is None:
        return result
    if len(names) == 1 and not isinstance(result, tuple):
        return {names[0]: result}
    if not isinstance(result, tuple) or len(result) != len(names):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
        message = f"{endpoint.service_id}/{endpoint.endpoint_id} declares outputs {list(names)} but returned {got}"
        raise OutputMismatch(message, f"{message}; return a tuple of exactly {len(names)} value(s)")
    return dict(zip(names, result, strict=True))


def encode_result(value: Any) -> bytes:
    """``value`` as strict JSON bytes; raises :class:`ResultNotSerializable` if it is not JSON."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ResultNotSerializable(
            f"the function's result is not JSON-serializable: {exc}",
            f"the function returned {type(value).__name__!s}; results must be JSON values "
            f"(dict, list, str, int, finite float, bool, None): {exc}",
        ) from exc


def call_endpoint(endpoint: Endpoint, arguments: Mapping[str, Any], context: InvocationContext) -> bytes:
    """Call the endpoint's function with bound ``arguments`` and return its result as JSON bytes.

    A :class:`LambdapoolError` the function raises on purpose (``BadRequest`` for a bad value) is answered
    with its own status. Raises :class:`FunctionError` (with the traceback) if it raises another ``Exception``,
    :class:`OutputMismatch` or :class:`ResultNotSerializable` for a result that cannot be answered.
    ``BaseException``\\ s that are not ``Exception`` (``SystemExit``...) propagate: they end the pipeline.
    """
    kwargs = dict(arguments)
    if endpoint.parameters.wants_context:
        kwargs["context"] = context
    try:
        result = endpoint.function(**kwargs)
    except LambdapoolError:
        raise  # raised on purpose (BadRequest for a bad value...): answered with its own status
    except Exception as exc:
        raise FunctionError(type(exc).__name__, str(exc) or type(exc).__name__, _user_traceback(exc)) from exc
    return encode_result(_shape_outputs(endpoint, result))


def call_trigger(endpoint: Endpoint, event: Any, context: InvocationContext) -> bytes:
    """Call a trigger endpoint's function with its ``event`` object; raises as :func:`call_endpoint`."""
    return call_endpoint(endpoint, {"event": event}, context)


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without lambdapool's own frames on top."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


_MOUNTS: weakref.WeakKeyDictionary[Any, tuple[Service, ...]] = weakref.WeakKeyDictionary()


def record_mount(app: Any, services: Sequence[Service]) -> None:
    """Remember that ``services`` were mounted on ``app`` (so loaders can find them from the app)."""
    known = {service.service_id: service for service in _MOUNTS.get(app, ())}
    for service in services:
        if not isinstance(service, Service):
            raise ValueError(f"mount() takes lambdapool.Service objects, got {service!r}")
        other = known.get(service.service_id)
        if other is not None and other is not service:
            raise ValueError(f"two different services named {service.service_id!r} are mounted on the same app")
        known[service.service_id] = service
    _MOUNTS[app] = tuple(known.values())


def mounted_services(app: Any) -> tuple[Service, ...]:
    """The services mounted on ``app`` with :func:`record_mount`, in mount order."""
    try:
        return _MOUNTS.get(app, ())
    except TypeError:  # not weak-referenceable: nothing was mounted on it
        return ()
