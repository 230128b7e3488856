"""lambdapool: Python function endpoints with real pools, locally and on AWS Lambda.

Declare endpoints on a :class:`Service`, mount it on a Chalice app with :func:`lambdapool.chalice.mount`,
run them with ``lambdapool local`` and deploy them with ``chalice deploy``. This package's top level is
standard library only: it is imported inside every pipeline and every Lambda package.
"""

from ._errors import (
    BadRequest,
    FunctionError,
    LambdapoolError,
    NotFound,
    OutOfMemory,
    OutputMismatch,
    PayloadTooLarge,
    PipelineCrashed,
    QueueFull,
    QueueTimeout,
    ResultNotSerializable,
    Timeout,
    Unauthorized,
)
from ._invocation import InvocationContext
from ._model import Endpoint, EndpointSpec, Pool, Service

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Endpoint",
    "EndpointSpec",
    "FunctionError",
    "InvocationContext",
    "LambdapoolError",
    "NotFound",
    "OutOfMemory",
    "OutputMismatch",
    "PayloadTooLarge",
    "PipelineCrashed",
    "Pool",
    "QueueFull",
    "QueueTimeout",
    "ResultNotSerializable",
    "Service",
    "Timeout",
    "Unauthorized",
    "__version__",
]
