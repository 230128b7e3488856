"""AWS Lambda's Invoke API in the emulator, so ``boto3.client("lambda", endpoint_url=...)`` works against it.

``RequestResponse`` runs the endpoint without queueing (a busy pool is a 429 ``TooManyRequestsException``,
as Lambda throttles); ``Event`` answers 202 and hands the call to the asynchronous deliveries; ``DryRun``
answers 204. A failed call is a 200 with ``X-Amz-Function-Error: Unhandled``.
"""

from __future__ import annotations

import base64
import enum
import logging
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from .._errors import BadRequest, LambdapoolError, PayloadTooLarge, QueueFull
from .._invocation import parse_body
from .._keys import is_authorized
from .._names import TASK_KEY
from ._delivery import Delivery
from ._requests import json_response, read_body
from ._runtime import CallResult, EndpointRuntime

if TYPE_CHECKING:
    from ._http import Host

log = logging.getLogger("lambdapool.lambda")
#: What Lambda answers a request signed with an unknown access key id (here: without the service's key).
INVALID_TOKEN = "The security token included in the request is invalid."


class InvocationType(str, enum.Enum):
    """``X-Amz-Invocation-Type``: wait for the result, queue the call, or only check it could be made."""

    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


def bare_function_name(function_name: str) -> str:
    """The function name in a path parameter that may be a name, a qualified name or an ARN (URL-quoted)."""
    return unquote(function_name).rsplit(":function:", 1)[-1].split(":", 1)[0]


def lambda_arguments(runtime: EndpointRuntime, payload: dict[str, Any]) -> dict[str, Any]:
    """What a Lambda event becomes for the pipeline: a trigger's raw event, a task envelope (its arguments
    checked here), or the bound parameters of a plain call. Raises :class:`BadRequest` if they do not bind."""
    if runtime.spec.trigger is not None:
        return payload
    if TASK_KEY in payload:
        runtime.spec.parameters.bind(payload.get("arguments") or {})
        return payload
    return runtime.spec.parameters.bind(payload)


def report_line(runtime: EndpointRuntime, result: CallResult) -> str:
    """Lambda's ``REPORT`` log line for a call (what ``LogType=Tail`` returns), with ``Init Duration`` on a
    cold start, so that callers can read cold starts the same way from the emulator and from AWS."""
    line = (
        f"REPORT RequestId: {uuid.uuid4()}\tDuration: {result.timing['execution']:.2f} ms\t"
        f"Billed Duration: {math.ceil(result.timing['execution'])} ms\tMemory Size: {runtime.spec.memory_mb} MB"
    )
    if result.api_context["coldStart"]:
        line += f"\tInit Duration: {result.timing['coldStart']:.2f} ms"
    return line + "\t\n"


def lambda_error(status: int, error_type: str, message: str, **extra: str) -> Response:
    """An error of the Lambda service itself (not of the function), as botocore parses it."""
    body = {"Type": "User", "message": message, **extra}
    return json_response(body, status, {"x-amzn-ErrorType": error_type})


def invoke(host: Host, request: Request, function_name: str) -> Response:
    """``POST /2015-03-31/functions/{FunctionName}/invocations`` (see the module docstring)."""
    name = bare_function_name(function_name)
    runtime = host.catalog.function(name)
    if runtime is None:
        return lambda_error(404, "ResourceNotFoundException", f"Function not found: {name}")
    keys = host.catalog.services[runtime.spec.service_id].api_keys
    if not is_authorized(keys, request.headers.get("Authorization"), sigv4=True):
        return lambda_error(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    requested = request.headers.get("X-Amz-Invocation-Type", InvocationType.REQUEST_RESPONSE.value)
    if requested not in {kind.value for kind in InvocationType}:
        return lambda_error(400, "InvalidParameterValueException", f"invalid invocation type {requested}")
    invocation_type = InvocationType(requested)
    try:
        payload = parse_body(read_body(request, host.max_body_bytes))
    except PayloadTooLarge as error:
        return lambda_error(413, "RequestTooLargeException", error.message)
    except BadRequest as error:
        return lambda_error(400, "InvalidRequestContentException", error.message)
    headers = {"X-Amz-Executed-Version": "$LATEST"}
    if invocation_type is InvocationType.DRY_RUN:
        return Response(status=204, headers=headers)
    if invocation_type is InvocationType.EVENT:
        failed = _event_failed(runtime)
        try:
            arguments = lambda_arguments(runtime, payload)
            host.deliveries.submit(Delivery(runtime, arguments, on_failure=failed, lambda_event=True))
        except BadRequest as error:  # as on Lambda: accepted, then failed in the function
            failed(error)
        return Response(status=202, headers=headers)
    try:
        result = runtime.call(lambda_arguments(runtime, payload), may_queue=False, lambda_event=True)
    except QueueFull:
        return lambda_error(
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
            Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
        )
    except LambdapoolError as error:
        body = {
            "errorMessage": error.message,
            "errorType": error.type_name(),
            "stackTrace": error.detailed_message.splitlines(),
        }
        return json_response(body, 200, {**headers, "X-Amz-Function-Error": "Unhandled"})
    if request.headers.get("X-Amz-Log-Type") == "Tail":
        headers["X-Amz-Log-Result"] = base64.b64encode(report_line(runtime, result).encode()).decode()
    return json_response(result.result, 200, headers)


def _event_failed(runtime: EndpointRuntime) -> Callable[[LambdapoolError], None]:
    def failed(error: LambdapoolError) -> None:
        """Like Lambda, an asynchronous invocation's result goes nowhere and its failure is logged."""
        log.warning(
            "asynchronous invocation of %s failed: %s: %s", runtime.spec.lambda_name, error.type_name(), error.message
        )

    return failed
