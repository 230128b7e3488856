"""One call of an endpoint: binding the request body to parameters, the context, the result's encoding.

The same code runs in the emulator's pipelines, under ``chalice local`` and inside Lambda, so a call binds,
fails and encodes the same way everywhere. Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import time
import traceback
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import BadRequest, FunctionError, LambdapoolError, OutputMismatch, ResultNotSerializable
from ._names import TASK_KEY, lambda_name
from ._types import JsonType, check, describe, hints_of, json_type

if TYPE_CHECKING:
    from ._model import Endpoint

__all__ = [
    "LOCAL_ACCOUNT_ID",
    "RESERVED_PARAMETERS",
    "CognitoIdentity",
    "InvocationContext",
    "LambdaFunction",
    "ParameterSpec",
    "call_endpoint",
    "call_trigger",
    "encode_result",
    "parse_body",
    "parse_json",
    "region_of",
]

#: Injected by lambdapool (``context``) or internal (the task envelope): never bound from a request body.
RESERVED_PARAMETERS = frozenset({"context", TASK_KEY})


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
    #: The JSON type of each annotated parameter (see :mod:`lambdapool._types`), and of ``**kwargs``' values.
    types: Mapping[str, JsonType] = dataclasses.field(default_factory=dict, hash=False)
    keyword_type: JsonType | None = dataclasses.field(default=None, hash=False)
    #: How each parameter is annotated, as written (any annotation, JSON type or not), and the defaults of
    #: the optional ones (a default that is no JSON value as its ``repr``): what listings show.
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False, compare=False)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_function(cls, function: Callable[..., Any], where: str, trigger: bool = False) -> ParameterSpec:
        """Read ``function``'s signature; raises ``ValueError`` for parameters a JSON object cannot bind, or,
        for a trigger endpoint (``trigger``), for anything but ``event`` and ``context`` without a default."""
        required: list[str] = []
        optional: list[str] = []
        var_keyword = wants_context = False
        hints = hints_of(function)
        kinds: dict[str, JsonType] = {}
        keyword_type: JsonType | None = None
        annotations: dict[str, str] = {}
        defaults: dict[str, Any] = {}
        for parameter in parameters_of(function):
            if parameter.name not in RESERVED_PARAMETERS:
                if parameter.annotation is not inspect.Parameter.empty:
                    annotations[parameter.name] = _written(hints.get(parameter.name, parameter.annotation))
                if parameter.default is not inspect.Parameter.empty:
                    defaults[parameter.name] = _json_or_repr(parameter.default)
            kind = json_type(hints[parameter.name]) if parameter.name in hints else None
            if kind is not None and parameter.default is None and check(None, kind) is not None:
                kind = {"kind": "union", "options": [kind, {"kind": "null"}]}  # ``x: float = None``
            if kind is not None and parameter.kind is inspect.Parameter.VAR_KEYWORD:
                keyword_type = kind
            elif kind is not None and parameter.name not in RESERVED_PARAMETERS:
                kinds[parameter.name] = kind
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
        return cls(
            tuple(required), tuple(optional), var_keyword, wants_context, kinds, keyword_type, annotations, defaults
        )

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
        if (self.types or self.keyword_type is not None) and not problems:
            problems += self._mismatches(payload)
        if problems:
            message = "; ".join(problems)
            raise BadRequest(message, f"{message}. Expected parameters: {self.describe()}")
        return dict(payload)

    def _mismatches(self, payload: Mapping[str, Any]) -> list[str]:
        """What in ``payload`` does not match the parameters' types."""
        found: list[str] = []
        for name, value in payload.items():
            kind = self.types.get(name)
            if kind is None and name not in self.required and name not in self.optional:
                kind = self.keyword_type
            if kind is None:
                continue
            problem = check(value, kind)
            if problem is not None:
                found.append(f"parameter {name!r} must be {describe(kind)}, {problem}")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "optional": list(self.optional),
            "varKeyword": self.var_keyword,
            "wantsContext": self.wants_context,
            "types": dict(self.types),
            "keywordType": self.keyword_type,
            "annotations": dict(self.annotations),
            "defaults": dict(self.defaults),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParameterSpec:
        return cls(
            tuple(data["required"]),
            tuple(data["optional"]),
            bool(data["varKeyword"]),
            bool(data["wantsContext"]),
            dict(data.get("types") or {}),
            data.get("keywordType"),
            dict(data.get("annotations") or {}),
            dict(data.get("defaults") or {}),
        )


def _written(annotation: Any) -> str:
    """An annotation as Python writes it (``float``, ``list[int]``, ``pandas.DataFrame``)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return (
            annotation.__name__
            if annotation.__module__ == "builtins"
            else f"{annotation.__module__}.{annotation.__qualname__}"
        )
    return repr(annotation).replace("typing.", "")


def _json_or_repr(value: Any) -> Any:
    """``value`` if it is a JSON value, else its ``repr``."""
    if value is None or (type(value) in _JSON_SCALARS and value == value and value not in _INFINITIES):
        return value  # what almost every default is: no encoder to make (see parameters_of)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


_JSON_SCALARS = (str, int, float, bool)
_INFINITIES = (float("inf"), float("-inf"))


class Parameter(typing.NamedTuple):
    """One parameter, with the attributes of an ``inspect.Parameter`` that binding reads."""

    name: str
    kind: Any  # an inspect.Parameter kind (POSITIONAL_ONLY...)
    default: Any  # inspect.Parameter.empty if none
    annotation: Any  # inspect.Parameter.empty if none


def parameters_of(function: Callable[..., Any]) -> list[Parameter]:
    """The parameters of ``inspect.signature(function)``, in order.

    A plain function's are read from its code object and its defaults, as ``inspect.signature`` reads them:
    the same parameters, without running the general machinery. This runs in every pipeline's init, for each
    endpoint of the app, and what init code touches for the first time costs each pipeline private memory
    (the signature machinery alone was 0.25 MB). Anything else (a wrapper with ``__wrapped__``, a
    ``__signature__``, any other attribute of its own, a ``functools.partial``, a class, a callable object)
    goes through ``inspect.signature``.
    """
    if (
        type(function) is not _FUNCTION_TYPE
        or function.__dict__  # __wrapped__, __signature__, __text_signature__, a partialmethod's marker...
        or len(function.__defaults__ or ()) > function.__code__.co_argcount
    ):
        return [
            Parameter(parameter.name, parameter.kind, parameter.default, parameter.annotation)
            for parameter in inspect.signature(function).parameters.values()
        ]
    code = function.__code__
    names = code.co_varnames
    positional, keyword_only = code.co_argcount, code.co_kwonlyargcount
    annotations = function.__annotations__
    defaults = function.__defaults__ or ()
    keyword_defaults = function.__kwdefaults__ or {}
    empty = inspect.Parameter.empty
    found: list[Parameter] = []
    first_default = positional - len(defaults)
    for index, name in enumerate(names[:positional]):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if index < code.co_posonlyargcount
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        default = defaults[index - first_default] if index >= first_default else empty
        found.append(Parameter(name, kind, default, annotations.get(name, empty)))
    after = positional + keyword_only
    if code.co_flags & inspect.CO_VARARGS:
        name = names[after]
        found.append(Parameter(name, inspect.Parameter.VAR_POSITIONAL, empty, annotations.get(name, empty)))
    for name in names[positional:after]:
        found.append(
            Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, keyword_defaults.get(name, empty), annotations.get(name, empty)
            )
        )
    if code.co_flags & inspect.CO_VARKEYWORDS:
        name = names[after + bool(code.co_flags & inspect.CO_VARARGS)]
        found.append(Parameter(name, inspect.Parameter.VAR_KEYWORD, empty, annotations.get(name, empty)))
    return found


_FUNCTION_TYPE = type(parameters_of)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: a number must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is out of range: a number must be finite")
    return value


def parse_json(raw: bytes | str | None) -> Any:
    """A request body as strict JSON (any value); an absent or blank body is ``{}``.

    Raises :class:`BadRequest` for invalid UTF-8, malformed JSON, and for what strict JSON (and so Lambda, and
    most clients) refuses: ``NaN``/``Infinity``, numbers out of a double's range, integers longer than Python
    converts (4300 digits) and nesting deeper than the parser's recursion limit.
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
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer over the conversion limit
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("request body is not valid JSON: it is nested too deeply") from exc


def parse_body(raw: bytes | str | None) -> dict[str, Any]:
    """The request body as a JSON object of parameters; raises :class:`BadRequest` as :func:`parse_json`
    does, and for a JSON value that is not an object."""
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest.not_an_object("request body", value)
    return value


#: The account in the ARNs the emulator and ``chalice local`` give (the one AWS's examples and moto use, and the
#: emulator's events carry): nothing local reaches a real account.
LOCAL_ACCOUNT_ID = "123456789012"
#: The version Lambda runs for an unqualified invocation.
LATEST_VERSION = "$LATEST"
#: The region when the environment names none.
DEFAULT_REGION = "us-east-1"
# Lambda's reserved variables that describe the function (its runtime builds the context object from them).
_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"
_LOG_GROUP = "AWS_LAMBDA_LOG_GROUP_NAME"
_LOG_STREAM = "AWS_LAMBDA_LOG_STREAM_NAME"


def region_of(*environments: Mapping[str, str]) -> str:
    """The AWS region named by the first of ``environments`` that names one (``AWS_REGION``, else
    ``AWS_DEFAULT_REGION``), else :data:`DEFAULT_REGION`."""
    for environment in environments:
        region = environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION")
        if region:
            return region
    return DEFAULT_REGION


def new_log_stream_name(version: str = LATEST_VERSION, now: float | None = None) -> str:
    """A log stream named as Lambda names each execution environment's: ``YYYY/MM/DD/[$LATEST]<32 hex digits>``,
    with the UTC date of ``now`` (a ``time.time()`` timestamp; the current time by default)."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime(now))}/[{version}]{uuid.uuid4().hex}"


@functools.cache
def _process_log_stream_name() -> str:
    """This process's log stream, when no environment names one (``chalice local``: the process is the
    execution environment)."""
    return new_log_stream_name()


def _int_or(value: Any, default: int) -> int:
    """``value`` as an integer (Lambda's runtime gives the memory size as a string), else ``default``."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    return default


@dataclasses.dataclass(frozen=True)
class CognitoIdentity:
    """``context.identity``: the Amazon Cognito identity that authorized the call. Lambda's Python runtime gives
    one whose fields are ``None`` to every call that does not come through the AWS Mobile SDK."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


@dataclasses.dataclass(frozen=True)
class LambdaFunction:
    """The Lambda function a call runs in, and the execution environment running it: what Lambda's context
    object and reserved environment variables tell a function about itself.

    Deployed, it comes from Lambda's own context object (:meth:`from_lambda_context`); in the emulator, from
    the variables each pipeline is started with (:meth:`environment` writes them, :meth:`from_environment`
    reads them back, as Lambda's runtime does); under ``chalice local``, from whatever of those variables is
    set. What no source gives is derived as Lambda derives it, by :meth:`named`.
    """

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    log_group_name: str
    log_stream_name: str
    function_version: str = LATEST_VERSION

    @classmethod
    def named(
        cls,
        function_name: str,
        memory_mb: int,
        region: str = DEFAULT_REGION,
        log_stream_name: str = "",
        function_version: str = LATEST_VERSION,
    ) -> LambdaFunction:
        """The function ``function_name`` (its deployed name; its Chalice name where none is known) with the
        names Lambda gives it: ARN ``arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{function_name}``, log
        group ``/aws/lambda/{function_name}``; a blank ``log_stream_name`` is this process's stream."""
        return cls(
            function_name=function_name,
            memory_limit_in_mb=memory_mb,
            invoked_function_arn=f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT_ID}:function:{function_name}",
            log_group_name=f"/aws/lambda/{function_name}",
            log_stream_name=log_stream_name or _process_log_stream_name(),
            function_version=function_version,
        )

    @classmethod
    def from_environment(cls, environment: Mapping[str, str], function_name: str, memory_mb: int) -> LambdaFunction:
        """The function that Lambda's reserved variables in ``environment`` describe; ``function_name`` and
        ``memory_mb`` stand in for the name and memory size where they are not set."""
        named = cls.named(
            environment.get(_FUNCTION_NAME) or function_name,
            _int_or(environment.get(_MEMORY_SIZE), memory_mb),
            region_of(environment),
            environment.get(_LOG_STREAM, ""),
            environment.get(_VERSION) or LATEST_VERSION,
        )
        return dataclasses.replace(named, log_group_name=environment.get(_LOG_GROUP) or named.log_group_name)

    @classmethod
    def from_lambda_context(cls, lambda_context: Any, default: LambdaFunction) -> LambdaFunction:
        """The function Lambda's context object describes. What it lacks or leaves blank (the stand-ins that
        ``chalice local`` and ``chalice.test`` pass) comes from ``default``, or, for another function name, is
        derived from that name."""

        def given(attribute: str) -> Any:
            return getattr(lambda_context, attribute, None) or None

        name = str(given("function_name") or default.function_name)
        derived = default
        if name != default.function_name:
            derived = cls.named(
                name, default.memory_limit_in_mb, default.region, default.log_stream_name, default.function_version
            )
        return cls(
            function_name=name,
            memory_limit_in_mb=_int_or(given("memory_limit_in_mb"), derived.memory_limit_in_mb),
            invoked_function_arn=str(given("invoked_function_arn") or derived.invoked_function_arn),
            log_group_name=str(given("log_group_name") or derived.log_group_name),
            log_stream_name=str(given("log_stream_name") or derived.log_stream_name),
            function_version=str(given("function_version") or derived.function_version),
        )

    @property
    def region(self) -> str:
        """The region in the function's ARN."""
        parts = self.invoked_function_arn.split(":")
        return parts[3] if len(parts) > 3 and parts[3] else DEFAULT_REGION

    def environment(self) -> dict[str, str]:
        """Lambda's reserved variables that describe this function (what :meth:`from_environment` reads)."""
        return {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            _FUNCTION_NAME: self.function_name,
            _MEMORY_SIZE: str(self.memory_limit_in_mb),
            _VERSION: self.function_version,
            _LOG_GROUP: self.log_group_name,
            _LOG_STREAM: self.log_stream_name,
        }


class InvocationContext:
    """What a function receives as its ``context`` parameter: Lambda's context object (``aws_request_id``,
    ``function_name``, ``function_version``, ``invoked_function_arn``, ``memory_limit_in_mb``, ``log_group_name``,
    ``log_stream_name``, ``identity``, ``client_context``, ``get_remaining_time_in_millis()``) and lambdapool's
    own attributes.

    ``deadline`` is a ``time.time()`` timestamp; ``folders`` are absolute paths of the endpoint's folders.
    ``function`` is the Lambda function the call runs in; without it, the endpoint's Chalice name and
    ``memory_mb``, named by :meth:`LambdaFunction.named`. ``identity`` and ``client_context`` are Lambda's;
    without them, what Lambda gives a call that does not come through the AWS Mobile SDK (a
    :class:`CognitoIdentity` of ``None`` fields, and ``None``).
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
        function: LambdaFunction | None = None,
        identity: Any = None,
        client_context: Any = None,
    ):
        if function is None:
            function = LambdaFunction.named(lambda_name(service_id, endpoint_id), memory_mb)
        self.request_id = self.aws_request_id = request_id
        self.service_id = service_id
        self.endpoint_id = endpoint_id
        self.function_name = function.function_name
        self.function_version = function.function_version
        self.invoked_function_arn = function.invoked_function_arn
        self.memory_limit_in_mb = function.memory_limit_in_mb
        self.log_group_name = function.log_group_name
        self.log_stream_name = function.log_stream_name
        self.identity = identity if identity is not None else CognitoIdentity()
        self.client_context = client_context
        self.deadline = deadline
        self.cold_start = cold_start
        self.pipeline_id = pipeline_id
        self.folders = list(folders)
        self.logger = logging.getLogger(f"lambdapool.{service_id}.{endpoint_id}")

    @property
    def remaining_time_ms(self) -> int:
        """Milliseconds left before the call's ``timeout_s`` runs out."""
        return max(0, int((self.deadline - time.time()) * 1000))

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's name for :attr:`remaining_time_ms`."""
        return self.remaining_time_ms


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
        raise FunctionError.of(exc, _user_traceback(exc)) from exc
    return encode_result(_shape_outputs(endpoint, result))


def call_trigger(endpoint: Endpoint, event: Any, context: InvocationContext) -> bytes:
    """Call a trigger endpoint's function with its ``event`` object; raises as :func:`call_endpoint`."""
    return call_endpoint(endpoint, {"event": event}, context)


def _shape_outputs(endpoint: Endpoint, result: Any) -> Any:
    names = endpoint.outputs
    if names is None:
        return result
    if len(names) == 1 and not isinstance(result, tuple):
        return {names[0]: result}
    if not isinstance(result, tuple) or len(result) != len(names):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
        message = f"{endpoint.where} declares outputs {list(names)} but returned {got}"
        raise OutputMismatch(message, f"{message}; return a tuple of exactly {len(names)} value(s)")
    return dict(zip(names, result, strict=True))


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without lambdapool's own frames on top."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
