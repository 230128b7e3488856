"""Every error lambdapool reports, and the one table mapping them to HTTP.

Each :class:`LambdapoolError` carries its HTTP ``status`` and the ``errorType`` name callers see (DESIGN.md
section 2). The model, the emulator and the Chalice adapter all raise these, so a failure has the same
status and ``errorType`` wherever the endpoint runs.

Messages are written once, here: a situation lambdapool detects itself has a named constructor that builds
the message from fields (``Timeout.call(where, limit_s)``). The plain ``Error(message, detailed_message)``
constructor stays for what a function raises on purpose (``raise BadRequest("unknown type")``) and for
rebuilding an error from its envelope.

The last classes are failures of the emulator's own machinery (loading app.py, the fork server, a
pipeline's socket); they are never answered to a caller as such.

Standard library only: this module goes into Lambda packages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = [
    "ERROR_CLASS_BY_TYPE",
    "STATUS_BY_ERROR_TYPE",
    "AppLoadError",
    "BadRequest",
    "Cancelled",
    "ChannelClosed",
    "ConfigurationError",
    "ForkServerError",
    "FunctionError",
    "LambdapoolError",
    "MethodNotAllowed",
    "NotFound",
    "OutOfMemory",
    "OutputMismatch",
    "Overloaded",
    "PayloadTooLarge",
    "PipelineCrashed",
    "QueueFull",
    "QueueTimeout",
    "ResponseSizeTooLarge",
    "ResultNotSerializable",
    "Timeout",
    "Unauthorized",
    "error_from_body",
]


class LambdapoolError(Exception):
    """Base of every error lambdapool answers with.

    ``message`` is one line for humans; ``detailed_message`` may hold more (a traceback, the expected
    parameters). ``retry_after_s`` is set on throttling errors and becomes the ``Retry-After`` header.
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalError"
    #: set by the emulator on a function's error: the call's log, for ``LogType=Tail``
    call_log: Any = None

    def __init__(self, message: str, detailed_message: str | None = None, *, retry_after_s: int | None = None):
        super().__init__(message)
        self.message = message
        self.detailed_message = detailed_message if detailed_message is not None else message
        self.retry_after_s = retry_after_s

    def type_name(self) -> str:
        """The ``errorType`` this instance is reported as."""
        return self.error_type

    def to_body(self) -> dict[str, str]:
        """The error envelope: ``{"errorType", "message", "detailedMessage"}``."""
        return {
            "errorType": self.type_name(),
            "message": self.message,
            "detailedMessage": self.detailed_message,
        }

    def to_json(self) -> bytes:
        """The envelope as JSON bytes."""
        return json.dumps(self.to_body()).encode()

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers this error is answered with."""
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class BadRequest(LambdapoolError):
    """Malformed JSON, a body that is not an object, or parameters that do not bind. Raised by the model,
    and by functions for a value they cannot handle."""

    status = 400
    error_type = "BadRequest"

    @classmethod
    def not_an_object(cls, what: str, value: object) -> BadRequest:
        """``what`` ("request body", "the event") is a JSON ``value`` that is not an object."""
        return cls(
            f"{what} must be a JSON object of parameters, got a JSON {type(value).__name__}",
            f'{what} must be a JSON object whose attributes are the function\'s parameters, e.g. {{"x": 1}}',
        )


class Unauthorized(LambdapoolError):
    """A service with API keys was called without a valid one. Raised by the emulator and the adapter."""

    status = 401
    error_type = "Unauthorized"

    @classmethod
    def for_service(cls, service_id: str) -> Unauthorized:
        return cls(
            f"service {service_id!r} requires an API key",
            "send the key as HTTP Basic user name (empty password) or as 'Authorization: Bearer <key>'",
        )


class NotFound(LambdapoolError):
    """Unknown service, endpoint, task or route. Raised by the emulator and the adapter."""

    status = 404
    error_type = "NotFound"

    @classmethod
    def task(cls, task_id: str) -> NotFound:
        return cls(f"unknown task {task_id!r}")

    @classmethod
    def removed(cls, where: str) -> NotFound:
        """``where`` was removed from app.py while work for it waited."""
        return cls(f"{where} no longer exists", "app.py was reloaded without this endpoint")


class MethodNotAllowed(LambdapoolError):
    """The route exists, but not for this HTTP method; answered with an ``Allow`` header. Raised by the
    emulator's router."""

    status = 405
    error_type = "MethodNotAllowed"
    allowed: tuple[str, ...] = ()

    def __init__(self, method: str, path: str, allowed: Iterable[str]):
        self.allowed = tuple(sorted(allowed))
        super().__init__(f"{method} is not allowed on {path}", f"allowed methods: {', '.join(self.allowed)}")

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Allow": ", ".join(self.allowed)}


class Overloaded(LambdapoolError):
    """The emulator is at its connection limit; answered at once, with ``Retry-After``."""

    status = 503
    error_type = "Overloaded"

    @classmethod
    def at_limit(cls, max_connections: int) -> Overloaded:
        return cls(
            f"the emulator is serving its limit of {max_connections} connections",
            "retry after the Retry-After delay, or raise lambdapool local's --max-connections",
            retry_after_s=1,
        )


class PayloadTooLarge(LambdapoolError):
    """The request body is over the limit (6 MB, Lambda's synchronous payload limit)."""

    status = 413
    error_type = "PayloadTooLarge"

    @classmethod
    def over_limit(
        cls, limit_bytes: int, size_bytes: int | None = None, *, asynchronous: bool = False
    ) -> PayloadTooLarge:
        """A body of ``size_bytes`` (unknown while it streams in chunks) over ``limit_bytes``, Lambda's limit
        for a synchronous or an ``asynchronous`` invocation."""
        got = f" ({size_bytes} bytes)" if size_bytes is not None else ""
        kind = "asynchronous" if asynchronous else "synchronous"
        return cls(
            f"request body{got} is over the {limit_bytes}-byte limit",
            f"request bodies are limited to {limit_bytes} bytes, Lambda's {kind} payload limit; pass large "
            "data through S3 and send its key instead",
        )

    @classmethod
    def encoded_event(cls, event_bytes: int, body_bytes: int, limit_bytes: int) -> PayloadTooLarge:
        """A body of ``body_bytes`` whose API Gateway proxy event is ``event_bytes``, over Lambda's limit."""
        return cls(
            f"request body ({body_bytes} bytes) makes an API Gateway event of {event_bytes} bytes, over the "
            f"{limit_bytes}-byte limit",
            "API Gateway passes the body to the API handler inside a JSON event (escaped, or base64 for binary "
            f"types), and Lambda refuses events over {limit_bytes} bytes; pass large data through S3 and send "
            "its key instead",
        )


class QueueFull(LambdapoolError):
    """``ceil`` pipelines are busy and ``queue`` requests already wait. Raised by the pool."""

    status = 429
    error_type = "QueueFull"

    @classmethod
    def pool_busy(cls, where: str, ceil: int, queue: int, retry_after_s: int) -> QueueFull:
        return cls(
            f"{where}: all {ceil} pipelines are busy and {queue} requests already wait",
            f"the queue is full (ceil={ceil}, queue={queue}); retry after {retry_after_s} s",
            retry_after_s=retry_after_s,
        )


class QueueTimeout(LambdapoolError):
    """A request waited ``timeout_ms`` without getting a pipeline: in the emulator's queue, or retrying a
    throttled Lambda function. Raised by the pool and by the adapter's run routes."""

    status = 429
    error_type = "QueueTimeout"

    @classmethod
    def waited(cls, where: str, timeout_ms: int, retry_after_s: int) -> QueueTimeout:
        return cls(
            f"{where}: no pipeline became free within timeout_ms={timeout_ms}",
            f"the request waited {timeout_ms} ms for one of the endpoint's ceil pipelines (on Lambda, its reserved "
            f"concurrency); raise ceil or timeout_ms, or retry after {retry_after_s} s",
            retry_after_s=retry_after_s,
        )


class FunctionError(LambdapoolError):
    """The endpoint function raised. ``errorType`` is the class name of what it raised."""

    status = 500

    def __init__(self, exception_type: str, message: str, detailed_message: str | None = None):
        super().__init__(message, detailed_message)
        self.exception_type = exception_type

    @classmethod
    def of(cls, exc: BaseException, traceback_text: str) -> FunctionError:
        """What the function raised (``exc``), with its traceback as the detailed message."""
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, traceback_text)

    def type_name(self) -> str:
        return self.exception_type


class ResultNotSerializable(LambdapoolError):
    """The function returned something that is not JSON (an object, a set, NaN...)."""

    status = 500
    error_type = "ResultNotSerializable"


class ResponseSizeTooLarge(LambdapoolError):
    """The function's result is over Lambda's 6 MB response limit (Lambda's own ``errorType``)."""

    status = 500
    error_type = "Function.ResponseSizeTooLarge"

    @classmethod
    def over(cls, size_bytes: int, limit_bytes: int) -> ResponseSizeTooLarge:
        return cls(
            f"Response payload size ({size_bytes} bytes) exceeded maximum allowed payload size ({limit_bytes} bytes).",
            "Lambda refuses a response over 6 MB: return a reference (an S3 key) to large results instead",
        )

    @classmethod
    def encoded_response(cls, response_bytes: int, body_bytes: int, limit_bytes: int) -> ResponseSizeTooLarge:
        """A route's answer of ``body_bytes`` whose API handler response is ``response_bytes`` once encoded."""
        return cls(
            f"Response payload size ({response_bytes} bytes) exceeded maximum allowed payload size "
            f"({limit_bytes} bytes).",
            f"the route's body ({body_bytes} bytes) is escaped into the API handler's JSON response for API "
            f"Gateway, which makes it {response_bytes} bytes, over Lambda's 6 MB limit (deployed, API Gateway "
            "answers 502 for it): return a reference (an S3 key) to large results instead",
        )


class OutputMismatch(LambdapoolError):
    """A function declared ``outputs=[...]`` but returned a value that does not match them."""

    status = 500
    error_type = "OutputMismatch"


class ConfigurationError(LambdapoolError):
    """The deployment lacks a setting a feature needs (e.g. ``LAMBDAPOOL_TASK_BUCKET`` for tasks on AWS)."""

    status = 500
    error_type = "ConfigurationError"


class PipelineCrashed(LambdapoolError):
    """The pipeline process died during the call (or while starting). The pool replaces it."""

    status = 502
    error_type = "PipelineCrashed"
    #: The process's ``waitpid`` status, when it is known (what Lambda's ``Runtime.ExitError`` reports).
    exit_status: int | None = None

    @classmethod
    def not_started(cls, cause: object = None) -> PipelineCrashed:
        """No pipeline could be started for the call (``cause``: why, when known)."""
        return cls(f"could not start a pipeline: {cause}" if cause is not None else "the pipeline failed to start")

    @classmethod
    def interrupted(cls) -> PipelineCrashed:
        """A task was queued or running when the emulator stopped (found when it starts again)."""
        return cls(
            "the emulator stopped before the task finished", "the task was queued or running when the emulator stopped"
        )

    @classmethod
    def shutting_down(cls) -> PipelineCrashed:
        """The call or work was still waiting, or running, when the emulator stopped."""
        return cls("the emulator is shutting down", "the emulator stopped before the call could finish")

    @classmethod
    def died(
        cls,
        where: str,
        how: str,
        pipeline: str | None = None,
        *,
        starting: bool = False,
        exit_status: int | None = None,
    ) -> PipelineCrashed:
        """The pipeline of ``where`` ended (``how``: "exited with code 1"...) during a call or its start."""
        if starting:
            error = cls(f"{where}: the pipeline died while starting: {how}")
            error.exit_status = exit_status
            return error
        error = cls(
            f"the pipeline died during the call: {how}",
            f"{how} while running {where} (pipeline {pipeline}); it is replaced. Check the emulator's output for "
            "what the function printed.",
        )
        error.exit_status = exit_status
        return error


class OutOfMemory(LambdapoolError):
    """The pipeline's resident memory went over ``memory_mb`` (or the function raised ``MemoryError``); the
    pipeline was killed and is replaced."""

    status = 502
    error_type = "OutOfMemory"

    @classmethod
    def over(cls, where: str, memory_mb: int, detail: str | None = None) -> OutOfMemory:
        return cls(
            f"{where} used more than memory_mb={memory_mb}",
            detail or f"the pipeline's resident memory went over {memory_mb} MB; it was killed and is replaced",
        )


class Timeout(LambdapoolError):
    """The call ran longer than ``timeout_s`` (or init code longer than the start limit); its pipeline was
    killed and is replaced."""

    status = 504
    error_type = "Timeout"

    @classmethod
    def call(cls, where: str, limit_s: float, pipeline: str | None = None) -> Timeout:
        """A call of ``where`` stopped after ``limit_s`` seconds (on ``pipeline``, which was killed)."""
        killed = f"; its pipeline ({pipeline}) was killed and is replaced" if pipeline else ""
        return cls(
            f"{where} ran longer than timeout_s={limit_s:g}", f"the call was stopped after {limit_s:g} s{killed}"
        )

    @classmethod
    def init_rerun(cls, where: str, timeout_s: float, init_limit_s: float) -> Timeout:
        """``where``'s init code ran past Lambda's Init limit, then past ``timeout_s`` when run again."""
        return cls(
            f"{where} ran longer than timeout_s={timeout_s:g}",
            f"app.py's init code ran past Lambda's {init_limit_s:g} s Init limit, so it ran again within the "
            f"first call, under timeout_s={timeout_s:g}, and did not finish: on Lambda every call of a new "
            "execution environment fails this way. Make init faster, or raise timeout_s",
        )

    @classmethod
    def init(cls, where: str, limit_s: float) -> Timeout:
        """``where``'s init code (app.py's module level) ran past ``limit_s`` seconds."""
        return cls(
            f"{where}: app.py's init code did not finish within {limit_s:g} s", "the pipeline was killed while starting"
        )


class Cancelled(LambdapoolError):
    """A call or submitted task was cancelled (``DELETE /public/api/v1/tasks/{taskId}``) before it finished."""

    status = 409
    error_type = "Cancelled"

    @classmethod
    def queued(cls) -> Cancelled:
        return cls("the call was cancelled while it waited in the queue")

    @classmethod
    def before_start(cls) -> Cancelled:
        return cls("the call was cancelled before it started")

    @classmethod
    def running(cls, pipeline: str) -> Cancelled:
        return cls(f"the call was cancelled while running; pipeline {pipeline} was killed and is replaced")

    @classmethod
    def unstoppable(cls) -> Cancelled:
        """A task cancelled on AWS, where a running invocation cannot be stopped: its result is dropped."""
        return cls("the task was cancelled; an invocation still running cannot be stopped on AWS")


_NAMED_ERRORS: tuple[type[LambdapoolError], ...] = (
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    Overloaded,
    QueueFull,
    QueueTimeout,
    ResultNotSerializable,
    ResponseSizeTooLarge,
    OutputMismatch,
    ConfigurationError,
    PipelineCrashed,
    OutOfMemory,
    Timeout,
    Cancelled,
)

#: errorType name -> class, for every error with a fixed name (FunctionError takes the raised class's name).
ERROR_CLASS_BY_TYPE: dict[str, type[LambdapoolError]] = {cls.error_type: cls for cls in _NAMED_ERRORS}

#: errorType name -> HTTP status: the table of DESIGN.md section 2.
STATUS_BY_ERROR_TYPE: dict[str, int] = {name: cls.status for name, cls in ERROR_CLASS_BY_TYPE.items()}


def error_from_body(body: Mapping[str, Any], retry_after_s: int | None = None) -> LambdapoolError:
    """Rebuild the error an envelope describes (the inverse of :meth:`LambdapoolError.to_body`).

    ``retry_after_s`` is not part of the envelope; pass it when it travelled beside it (a header).
    """
    error_type = str(body.get("errorType", "InternalError"))
    message = str(body.get("message", ""))
    detailed = body.get("detailedMessage")
    detailed = str(detailed) if detailed is not None else None
    cls = ERROR_CLASS_BY_TYPE.get(error_type)
    if cls is None:
        error: LambdapoolError = FunctionError(error_type, message, detailed)
    else:
        error = LambdapoolError.__new__(cls)  # the named class, without its own constructor's fields
        LambdapoolError.__init__(error, message, detailed)
    error.retry_after_s = retry_after_s
    return error


# -- the emulator's own machinery -----------------------------------------------------------------------


class AppLoadError(Exception):
    """``app.py`` is missing, fails to import, or declares no usable services. Raised while loading a
    project (by the emulator, ``lambdapool config`` and inside pipelines)."""


class ForkServerError(RuntimeError):
    """The fork server could not be started, or stopped answering. Raised by the emulator's fork server
    handle."""


class ChannelClosed(EOFError):
    """The other end of a pipeline's or the fork server's socket closed (the process exited or was killed).
    Raised by the wire protocol."""
