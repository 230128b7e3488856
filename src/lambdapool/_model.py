"""The function-endpoint model: services, endpoints, pools and triggers, as declared in ``app.py``.

An endpoint is described once, by :class:`EndpointSpec` (plain data that crosses process boundaries as
JSON); :class:`Endpoint` is that description plus the function. Standard library only: this module is
imported inside every pipeline and every Lambda package, and knows nothing of Chalice, Werkzeug or processes.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from ._folders import check_folders, publish
from ._invocation import ParameterSpec
from ._limits import (
    ASYNC_RETRIES_RANGE,
    LAMBDA_MEMORY_MB_RANGE,
    LAMBDA_TIMEOUT_S_RANGE,
    MAX_EVENT_AGE_S_RANGE,
)
from ._names import check_id, lambda_name
from ._triggers import S3Trigger, ScheduleTrigger, Trigger, trigger_from_json

__all__ = [
    "Endpoint",
    "EndpointSpec",
    "Pool",
    "Service",
    "ServiceSpec",
]

F = TypeVar("F", bound=Callable[..., Any])


def _check_int(owner: str, name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{owner}: {name} must be {bound}, got {value}")
    return value


#: ``Pool.cruise`` when not given (a sentinel: the default depends on ``floor`` and ``ceil``).
DEFAULT_CRUISE = -1


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
    #: 2 unless given, kept within ``floor`` and ``ceil`` (so that ``Pool(ceil=1)`` is valid).
    cruise: int = DEFAULT_CRUISE
    queue: int = 16
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        _check_int("Pool", "floor", self.floor, 0)
        _check_int("Pool", "ceil", self.ceil, 1)
        if self.cruise is DEFAULT_CRUISE and isinstance(self.floor, int) and isinstance(self.ceil, int):
            object.__setattr__(self, "cruise", max(self.floor, min(2, self.ceil)))
        _check_int("Pool", "cruise", self.cruise, 0)
        _check_int("Pool", "queue", self.queue, 0)
        _check_int("Pool", "timeout_ms", self.timeout_ms, 0)
        if not self.floor <= self.cruise <= self.ceil:
            raise ValueError(
                f"Pool: floor <= cruise <= ceil must hold, got floor={self.floor}, cruise={self.cruise}, "
                f"ceil={self.ceil}"
            )

    def to_dict(self) -> dict[str, int]:
        """``{"floor", "ceil", "cruise", "queue", "timeout_ms"}``."""
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
        if "cruise" not in overrides and not values["floor"] <= values["cruise"] <= values["ceil"]:
            values["cruise"] = DEFAULT_CRUISE  # the file did not set it: the default within its floor and ceil
        try:
            return Pool(**values)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of a service, described without its function: what the emulator, the deploy code and
    the status pages know of it.

    ``timeout_s`` and ``memory_mb`` are Lambda's ``lambda_timeout`` and ``lambda_memory_size``; ``outputs``
    names the items of a returned tuple; ``folders`` are paths (relative to the project directory) handed to
    the function as ``context.folders``; ``inline`` endpoints run inside the API handler on AWS; a
    ``trigger`` endpoint is fired by a schedule or S3 events instead of being called.
    """

    service_id: str
    endpoint_id: str
    pool: Pool = Pool()
    timeout_s: int = 60
    memory_mb: int = 128
    description: str = ""
    outputs: tuple[str, ...] | None = None
    folders: tuple[str, ...] = ()
    parameters: ParameterSpec = dataclasses.field(default_factory=ParameterSpec)
    inline: bool = False
    trigger: Trigger | None = None
    #: How often a failed asynchronous invocation (``Event``, S3, schedule) is retried, and how long one is
    #: kept while the pool is busy: Lambda's ``MaximumRetryAttempts`` and ``MaximumEventAgeInSeconds``.
    async_retries: int = 2
    max_event_age_s: int = 21600

    @property
    def lambda_name(self) -> str:
        """The Chalice function name: ``{service}-{endpoint}``."""
        return lambda_name(self.service_id, self.endpoint_id)

    @property
    def where(self) -> str:
        """``{service}/{endpoint}``, as messages name the endpoint."""
        return f"{self.service_id}/{self.endpoint_id}"

    @property
    def kind(self) -> str:
        """``function``, or the trigger's kind (``schedule``, ``s3``)."""
        return self.trigger.kind.value if self.trigger is not None else "function"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (the inverse of :meth:`from_json`)."""
        return {
            "serviceId": self.service_id,
            "endpointId": self.endpoint_id,
            "kind": self.kind,
            "pool": self.pool.to_dict(),
            "timeoutS": self.timeout_s,
            "memoryMb": self.memory_mb,
            "description": self.description,
            "outputs": list(self.outputs) if self.outputs is not None else None,
            "folders": list(self.folders),
            "parameters": self.parameters.to_json(),
            "inline": self.inline,
            "asyncRetries": self.async_retries,
            "maxEventAgeS": self.max_event_age_s,
            "trigger": self.trigger.to_json() if self.trigger is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointSpec:
        return cls(
            service_id=data["serviceId"],
            endpoint_id=data["endpointId"],
            pool=Pool(**data["pool"]),
            timeout_s=int(data["timeoutS"]),
            memory_mb=int(data["memoryMb"]),
            description=data.get("description", ""),
            outputs=tuple(data["outputs"]) if data.get("outputs") is not None else None,
            folders=tuple(data.get("folders", ())),
            parameters=ParameterSpec.from_json(data["parameters"]),
            inline=bool(data.get("inline", False)),
            async_retries=int(data.get("asyncRetries", 2)),
            max_event_age_s=int(data.get("maxEventAgeS", 21600)),
            trigger=trigger_from_json(data["trigger"]) if data.get("trigger") else None,
        )


@dataclasses.dataclass(frozen=True)
class Endpoint(EndpointSpec):
    """A declared endpoint: its description and the function that serves it."""

    function: Callable[..., Any] = dataclasses.field(kw_only=True, compare=False, repr=False)

    @property
    def spec(self) -> EndpointSpec:
        """The description alone, without the function."""
        return EndpointSpec(**{field.name: getattr(self, field.name) for field in dataclasses.fields(EndpointSpec)})


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """A service described without its functions (what the emulator learns from a project)."""

    service_id: str
    description: str = ""
    api_keys: tuple[str, ...] = ()
    endpoints: tuple[EndpointSpec, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "serviceId": self.service_id,
            "description": self.description,
            "apiKeys": list(self.api_keys),
            "endpoints": [endpoint.to_json() for endpoint in self.endpoints],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceSpec:
        return cls(
            service_id=data["serviceId"],
            description=data.get("description", ""),
            api_keys=tuple(data.get("apiKeys", ())),
            endpoints=tuple(EndpointSpec.from_json(endpoint) for endpoint in data["endpoints"]),
        )


@dataclasses.dataclass(frozen=True)
class _Declaration:
    """The settings of one decorator call, applied to the function it decorates."""

    endpoint_id: str | None
    pool: Pool | None
    timeout_s: int
    memory_mb: int
    description: str | None
    outputs: Sequence[str] | None = None
    folders: Sequence[str] = ()
    inline: bool = False
    trigger: Trigger | None = None
    async_retries: int = 2
    max_event_age_s: int = 21600


class Service:
    """A named group of endpoints (Dataiku's API service).

    ``service_id`` matches ``[A-Za-z0-9_-]+``. ``api_keys``, when given, are the keys callers must present
    (HTTP Basic with the key as user name, or ``Authorization: Bearer <key>``). Raises ``ValueError`` for an
    invalid id or keys that are not non-empty strings.
    """

    def __init__(self, service_id: str, description: str = "", api_keys: Iterable[str] | None = None):
        self.service_id = check_id("Service id", service_id)
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

    def spec(self) -> ServiceSpec:
        """The service and its endpoints, described without their functions."""
        endpoints = tuple(endpoint.spec for endpoint in self._endpoints.values())
        return ServiceSpec(self.service_id, self.description, self.api_keys, endpoints)

    @overload
    def function(self, function: F) -> F: ...

    @overload
    def function(
        self,
        function: None = None,
        *,
        endpoint_id: str | None = None,
        pool: Pool | None = None,
        timeout_s: int = 60,
        memory_mb: int = 128,
        description: str | None = None,
        outputs: Sequence[str] | None = None,
        folders: Sequence[str] = (),
        inline: bool = False,
        async_retries: int = 2,
        max_event_age_s: int = 21600,
    ) -> Callable[[F], F]: ...

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
        async_retries: int = 2,
        max_event_age_s: int = 21600,
    ) -> F | Callable[[F], F]:
        """Declare a function endpoint; usable as ``@svc.function`` or ``@svc.function(...)``.

        The JSON body's attributes bind to the function's parameters; ``context`` is injected. On AWS the
        endpoint gets its own Lambda function, unless ``inline=True``: it then runs inside the API handler
        (no extra hop, but no pool of its own: its ``pool``, ``timeout_s`` and ``memory_mb`` are not
        applied there). Returns the function unchanged. Raises ``ValueError`` for an invalid or duplicate
        id, an invalid pool, limits outside Lambda's (``timeout_s`` 1..900, ``memory_mb`` 128..10240),
        invalid ``outputs`` or a signature a JSON object cannot bind. ``async_retries`` (0-2) and
        ``max_event_age_s`` (60-21600) are Lambda's retries and maximum event age for asynchronous calls.
        """
        declaration = _Declaration(
            endpoint_id,
            pool,
            timeout_s,
            memory_mb,
            description,
            outputs,
            folders,
            inline,
            async_retries=async_retries,
            max_event_age_s=max_event_age_s,
        )
        register = self._decorator(declaration)
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
        async_retries: int = 2,
        max_event_age_s: int = 21600,
    ) -> Callable[[F], F]:
        """Declare a scheduled endpoint: ``fn(event)`` runs on an EventBridge ``rate()`` or ``cron()``
        expression (``event`` is shaped like Chalice's ``CloudWatchEvent``). Raises ``ValueError`` for an
        invalid expression, and as :meth:`function` does."""
        trigger = ScheduleTrigger.parse(expression)
        return self._decorator(
            _Declaration(
                endpoint_id,
                pool,
                timeout_s,
                memory_mb,
                description,
                trigger=trigger,
                async_retries=async_retries,
                max_event_age_s=max_event_age_s,
            )
        )

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
        async_retries: int = 2,
        max_event_age_s: int = 21600,
    ) -> Callable[[F], F]:
        """Declare an S3-triggered endpoint: ``fn(event)`` runs for each object event in ``bucket`` whose key
        starts with ``prefix`` and ends with ``suffix`` (``event`` has ``.bucket`` and ``.key`` like Chalice's
        ``S3Event``). ``events`` defaults to ``["s3:ObjectCreated:*"]``. Raises ``ValueError`` for an invalid
        bucket name or event name, and as :meth:`function` does."""
        trigger: Trigger = S3Trigger.of(bucket, prefix, suffix, events)
        return self._decorator(
            _Declaration(
                endpoint_id,
                pool,
                timeout_s,
                memory_mb,
                description,
                trigger=trigger,
                async_retries=async_retries,
                max_event_age_s=max_event_age_s,
            )
        )

    def _decorator(self, declaration: _Declaration) -> Callable[[F], F]:
        """A decorator that registers the function it decorates with ``declaration`` and returns it unchanged."""

        def register(fn: F) -> F:
            self._register(fn, declaration)
            return fn

        return register

    def _register(self, fn: Callable[..., Any], declaration: _Declaration) -> Endpoint:
        if not callable(fn):
            raise ValueError(f"Service {self.service_id!r}: {fn!r} is not callable")
        given_id = declaration.endpoint_id
        name = check_id("Endpoint id", given_id if given_id is not None else getattr(fn, "__name__", ""))
        where = f"endpoint {self.service_id}/{name}"
        if name in self._endpoints:
            raise ValueError(f"{where} is declared twice")
        pool = declaration.pool if declaration.pool is not None else Pool()
        if not isinstance(pool, Pool):
            raise ValueError(f"{where}: pool must be a lambdapool.Pool, got {pool!r}")
        _check_int(where, "timeout_s", declaration.timeout_s, *LAMBDA_TIMEOUT_S_RANGE)
        _check_int(where, "memory_mb", declaration.memory_mb, *LAMBDA_MEMORY_MB_RANGE)
        _check_int(where, "async_retries", declaration.async_retries, *ASYNC_RETRIES_RANGE)
        _check_int(where, "max_event_age_s", declaration.max_event_age_s, *MAX_EVENT_AGE_S_RANGE)
        outputs, folders = declaration.outputs, declaration.folders
        output_names: tuple[str, ...] | None = None
        if outputs is not None:
            if isinstance(outputs, str) or not all(isinstance(item, str) and item for item in outputs):
                raise ValueError(f"{where}: outputs must be a list of non-empty names, got {outputs!r}")
            output_names = tuple(outputs)
            if not output_names or len(set(output_names)) != len(output_names):
                raise ValueError(f"{where}: outputs must be a non-empty list of distinct names, got {outputs!r}")
        folders = check_folders(where, folders)
        if folders:
            publish(where, folders, fn)
        endpoint = Endpoint(
            service_id=self.service_id,
            endpoint_id=name,
            pool=pool,
            timeout_s=declaration.timeout_s,
            memory_mb=declaration.memory_mb,
            description=declaration.description if declaration.description is not None else inspect.getdoc(fn) or "",
            outputs=output_names,
            folders=tuple(folders),
            parameters=ParameterSpec.from_function(fn, where, trigger=declaration.trigger is not None),
            inline=bool(declaration.inline),
            trigger=declaration.trigger,
            async_retries=declaration.async_retries,
            max_event_age_s=declaration.max_event_age_s,
            function=fn,
        )
        self._endpoints[name] = endpoint
        return endpoint
