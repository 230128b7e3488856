"""One call of an endpoint: binding the request body to parameters, the context, the result's encoding.

The same code runs in the emulator's pipelines, under ``chalice local`` and inside Lambda, so a call binds,
fails and encodes the same way everywhere. Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import BadRequest, FunctionError, LambdapoolError, OutputMismatch, ResultNotSerializable
from ._names import TASK_KEY, lambda_name

if TYPE_CHECKING:
    from ._model import Endpoint

__all__ = [
    "RESERVED_PARAMETERS",
    "InvocationContext",
    "ParameterSpec",
    "call_endpoint",
    "call_trigger",
    "encode_result",
    "parse_body",
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

    def to_json(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "optional": list(self.optional),
            "varKeyword": self.var_keyword,
            "wantsContext": self.wants_context,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParameterSpec:
        return cls(
            tuple(data["required"]),
            tuple(data["optional"]),
            bool(data["varKeyword"]),
            bool(data["wantsContext"]),
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: a number must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is out of range: a number must be finite")
    return value


def parse_body(raw: bytes | str | None) -> dict[str, Any]:
    """The request body as a JSON object; an absent or blank body is ``{}``.

    Raises :class:`BadRequest` for invalid UTF-8, malformed JSON, a JSON value that is not an object, and
    for what strict JSON (and so Lambda, and most clients) refuses: ``NaN``/``Infinity``, integers longer
    than Python converts (4300 digits) and nesting deeper than the parser's recursion limit.
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
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer over the conversion limit
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("request body is not valid JSON: it is nested too deeply") from exc
    if not isinstance(value, dict):
        raise BadRequest.not_an_object("request body", value)
    return value


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
        self.function_name = lambda_name(service_id, endpoint_id)
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
