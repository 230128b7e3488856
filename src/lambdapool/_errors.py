"""Every error lambdapool reports to a caller, and the one table mapping them to HTTP.

Each class carries its HTTP ``status`` and the ``errorType`` name callers see (DESIGN.md section 2).
The model, the emulator and the Chalice adapter all raise these, so a failure has the same status and
``errorType`` wherever the endpoint runs. This module is standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class LambdapoolError(Exception):
    """Base of every error lambdapool answers with.

    ``message`` is one line for humans; ``detailed_message`` may hold more (a traceback, the expected
    parameters). ``retry_after_s`` is set on throttling errors and becomes the ``Retry-After`` header.
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalError"

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
        return json.dumps(self.to_body()).encode()

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers this error is answered with."""
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class BadRequest(LambdapoolError):
    """Malformed JSON, a body that is not an object, or parameters that do not bind. Raised by the model."""

    status = 400
    error_type = "BadRequest"


class Unauthorized(LambdapoolError):
    """A service with API keys was called without a valid one. Raised by the emulator."""

    status = 401
    error_type = "Unauthorized"


class NotFound(LambdapoolError):
    """Unknown service, endpoint or task. Raised by the emulator."""

    status = 404
    error_type = "NotFound"


class PayloadTooLarge(LambdapoolError):
    """The request body is over the limit (6 MB, Lambda's synchronous payload limit)."""

    status = 413
    error_type = "PayloadTooLarge"


class QueueFull(LambdapoolError):
    """``ceil`` pipelines are busy and ``queue`` requests already wait. Raised by the pool."""

    status = 429
    error_type = "QueueFull"


class QueueTimeout(LambdapoolError):
    """A request waited ``timeout_ms`` in the queue without getting a pipeline. Raised by the pool."""

    status = 429
    error_type = "QueueTimeout"


class FunctionError(LambdapoolError):
    """The endpoint function raised. ``errorType`` is the class name of what it raised."""

    status = 500

    def __init__(self, exception_type: str, message: str, detailed_message: str | None = None):
        super().__init__(message, detailed_message)
        self.exception_type = exception_type

    def type_name(self) -> str:
        return self.exception_type


class ResultNotSerializable(LambdapoolError):
    """The function returned something that is not JSON (an object, a set, NaN...)."""

    status = 500
    error_type = "ResultNotSerializable"


class OutputMismatch(LambdapoolError):
    """A function declared ``outputs=[...]`` but returned a value that does not match them."""

    status = 500
    error_type = "OutputMismatch"


class PipelineCrashed(LambdapoolError):
    """The pipeline process died during the call (or while starting). The pool replaces it."""

    status = 502
    error_type = "PipelineCrashed"


class OutOfMemory(LambdapoolError):
    """The pipeline's resident memory went over ``memory_mb``; it was killed and is replaced."""

    status = 502
    error_type = "OutOfMemory"


class Timeout(LambdapoolError):
    """The call ran longer than ``timeout_s``; its pipeline was killed and is replaced."""

    status = 504
    error_type = "Timeout"


class ConfigurationError(LambdapoolError):
    """The deployment lacks a setting a feature needs (e.g. ``LAMBDAPOOL_TASK_BUCKET`` for tasks on AWS)."""

    status = 500
    error_type = "ConfigurationError"


class Cancelled(LambdapoolError):
    """A submitted task was cancelled (``DELETE /public/api/v1/tasks/{taskId}``) before it finished."""

    status = 409
    error_type = "Cancelled"


_NAMED_ERRORS: tuple[type[LambdapoolError], ...] = (
    BadRequest,
    Unauthorized,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    QueueTimeout,
    ResultNotSerializable,
    OutputMismatch,
    PipelineCrashed,
    OutOfMemory,
    Timeout,
    Cancelled,
    ConfigurationError,
)

#: errorType name -> class, for every error with a fixed name (FunctionError takes the raised class's name).
ERROR_CLASS_BY_TYPE: dict[str, type[LambdapoolError]] = {cls.error_type: cls for cls in _NAMED_ERRORS}

#: errorType name -> HTTP status: the table of DESIGN.md section 2.
STATUS_BY_ERROR_TYPE: dict[str, int] = {name: cls.status for name, cls in ERROR_CLASS_BY_TYPE.items()}


def error_from_body(body: dict[str, Any]) -> LambdapoolError:
    """Rebuild the error an envelope describes (the inverse of :meth:`LambdapoolError.to_body`)."""
    error_type = str(body.get("errorType", "InternalError"))
    message = str(body.get("message", ""))
    detailed = body.get("detailedMessage")
    cls = ERROR_CLASS_BY_TYPE.get(error_type)
    if cls is None:
        return FunctionError(error_type, message, detailed)
    return cls(message, detailed)
