"""AWS Lambda's Invoke API in the emulator, so ``boto3.client("lambda", endpoint_url=...)`` works against it.

``RequestResponse`` runs the endpoint without queueing (a busy pool is a 429 ``TooManyRequestsException``,
as Lambda throttles); ``Event`` answers 202 and hands the call to the asynchronous deliveries; ``DryRun``
answers 204. A failed call is a 200 with ``X-Amz-Function-Error: Unhandled``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import logging
import math
import signal
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from ..._errors import (
    BadRequest,
    LambdapoolError,
    OutOfMemory,
    PayloadTooLarge,
    PipelineCrashed,
    QueueFull,
    ResponseSizeTooLarge,
    Timeout,
)
from ..._invocation import LOCAL_ACCOUNT_ID, parse_json
from ..._keys import is_authorized
from ..._limits import ASYNC_PAYLOAD_LIMIT_BYTES, LOG_TAIL_BYTES
from ..._names import TASK_KEY
from ..http._requests import json_response, read_body
from ..pipelines._supervision import ProcessExit
from ..pool._calls import CallLog
from ..pool._runtime import EndpointRuntime
from ..work._delivery import Delivery

if TYPE_CHECKING:
    from ..http._app import Host

log = logging.getLogger("lambdapool.lambda")
#: What Lambda answers a request signed with an unknown access key id (here: without the service's key).
INVALID_TOKEN = "The security token included in the request is invalid."


class InvocationType(str, enum.Enum):
    """``X-Amz-Invocation-Type``: wait for the result, queue the call, or only check it could be made."""

    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


_SIGNAL_WORDS = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted"}


@dataclasses.dataclass(frozen=True)
class FunctionRef:
    """What ``FunctionName`` names: a function and, optionally, a version or alias (``name:qualifier``, or
    an ARN, whose account must be the emulator's)."""

    name: str
    qualifier: str | None = None
    foreign: bool = False  # an ARN of another account

    @classmethod
    def parse(cls, function_name: str, qualifier: str | None = None) -> FunctionRef:
        text = unquote(function_name)
        foreign = False
        if text.startswith("arn:"):
            parts = text.split(":")  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
            foreign = len(parts) < 7 or parts[4] != LOCAL_ACCOUNT_ID
            text = ":".join(parts[6:])
        name, _, named_qualifier = text.partition(":")
        return cls(name, qualifier or named_qualifier or None, foreign)


def lambda_arguments(runtime: EndpointRuntime, payload: Any) -> dict[str, Any]:
    """What a Lambda event becomes for the pipeline: a trigger's raw event, a task envelope (its arguments
    checked here), or the bound parameters of a plain call. Raises :class:`BadRequest` if they do not bind
    (on Lambda, the function's handler refuses them: a function error)."""
    if runtime.spec.trigger is not None:
        return payload if isinstance(payload, dict) else {"event": payload}
    if not isinstance(payload, dict):
        raise BadRequest.not_an_object("the event", payload)
    if runtime.spec.kind == "api":  # the app's API handler takes API Gateway's proxy event as it is
        return payload
    if TASK_KEY in payload:
        runtime.spec.parameters.bind(payload.get("arguments") or {})
        return payload
    return runtime.spec.parameters.bind(payload)


def log_tail(
    runtime: EndpointRuntime, request_id: str, log: CallLog | None, elapsed_ms: float, init_ms: float | None
) -> str:
    """What ``LogType=Tail`` returns for a call, as Lambda writes it: ``START``, the function's output, ``END``
    and ``REPORT`` (``Max Memory Used`` when the pipeline reported it, ``Init Duration`` on a cold start, so
    that callers read cold starts the same way from the emulator and from AWS), cut to the last 4 KB.

    ``log`` is what the pipeline reported (none when it died or was killed in the call: then the duration
    is ``elapsed_ms``, the call's time as the Invoke API saw it)."""
    duration_ms = log.execution_ms if log is not None else elapsed_ms
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {runtime.spec.memory_mb} MB\t"
    )
    if log is not None and log.peak_rss_bytes:
        report += f"Max Memory Used: {math.ceil(log.peak_rss_bytes / 2**20)} MB\t"
    if init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    output = log.output if log is not None else ""
    if output and not output.endswith("\n"):
        output += "\n"
    text = f"START RequestId: {request_id} Version: $LATEST\n{output}END RequestId: {request_id}\n{report}\n"
    return text.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "ignore")


def function_error_payload(error: LambdapoolError, request_id: str, runtime: EndpointRuntime) -> dict[str, Any]:
    """What Lambda answers for a failed invocation: the function's own exception, or the runtime's failures
    with Lambda's names (``Sandbox.Timedout``, ``Runtime.OutOfMemory``, ``Runtime.ExitError``)."""
    if isinstance(error, Timeout):
        message = f"RequestId: {request_id} Error: Task timed out after {runtime.spec.timeout_s:.2f} seconds"
        return {"errorType": "Sandbox.Timedout", "errorMessage": message}
    if isinstance(error, OutOfMemory):
        message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
        return {"errorType": "Runtime.OutOfMemory", "errorMessage": message}
    if isinstance(error, ResponseSizeTooLarge):
        return {"errorType": error.error_type, "errorMessage": error.message}
    if isinstance(error, PipelineCrashed) and error.exit_status is not None:
        message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_words(error.exit_status)}"
        return {"errorType": "Runtime.ExitError", "errorMessage": message}
    return {
        "errorMessage": error.message,
        "errorType": error.type_name(),
        "stackTrace": error.detailed_message.splitlines(),
    }


def _exit_words(status: int) -> str:
    """A ``waitpid`` status as Lambda's runtime reports it ("exit status 3", "signal: segmentation fault")."""
    ended = ProcessExit.of_wait_status(status)
    if ended.signal_number is None:
        return f"exit status {ended.code}"
    known = ended.signal
    return "signal: " + (
        _SIGNAL_WORDS.get(known, known.name.lower()) if known is not None else str(ended.signal_number)
    )


def lambda_error(status: int, error_type: str, message: str, request_id: str, **extra: str) -> Response:
    """An error of the Lambda service itself (not of the function), as botocore parses it."""
    body = {"Type": "User", "message": message, **extra}
    return json_response(body, status, {"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id})


def invoke(host: Host, request: Request, function_name: str) -> Response:
    """``POST /2015-03-31/functions/{FunctionName}/invocations`` (see the module docstring)."""
    request_id = str(uuid.uuid4())
    ref = FunctionRef.parse(function_name, request.args.get("Qualifier"))
    known = ref.qualifier is None or ref.qualifier in host.catalog.qualifiers
    runtime = host.catalog.function(ref.name) if known and not ref.foreign else None
    if runtime is None:
        named = unquote(function_name) + (f":{ref.qualifier}" if request.args.get("Qualifier") else "")
        return lambda_error(404, "ResourceNotFoundException", f"Function not found: {named}", request_id)
    served = host.catalog.services.get(runtime.spec.service_id)
    keys = served.api_keys if served is not None and runtime is not host.catalog.api_handler else ()
    if not is_authorized(keys, request.headers.get("Authorization"), sigv4=True):
        return lambda_error(403, "UnrecognizedClientException", INVALID_TOKEN, request_id)
    requested = request.headers.get("X-Amz-Invocation-Type", InvocationType.REQUEST_RESPONSE.value)
    if requested not in {kind.value for kind in InvocationType}:
        message = f"invalid invocation type {requested}"
        return lambda_error(400, "InvalidParameterValueException", message, request_id)
    invocation_type = InvocationType(requested)
    asynchronous = invocation_type is InvocationType.EVENT
    limit = ASYNC_PAYLOAD_LIMIT_BYTES if asynchronous else host.max_body_bytes
    try:
        payload = parse_json(read_body(request, limit, asynchronous=asynchronous))
    except PayloadTooLarge as error:
        return lambda_error(413, "RequestTooLargeException", error.message, request_id)
    except BadRequest as error:
        return lambda_error(400, "InvalidRequestContentException", error.message, request_id)
    headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
    if invocation_type is InvocationType.DRY_RUN:
        return Response(status=204, headers=headers)
    if invocation_type is InvocationType.EVENT:
        failed = _event_failed(runtime)
        try:
            arguments = lambda_arguments(runtime, payload)
            delivery = Delivery(
                runtime,
                arguments,
                request_id=request_id,
                on_failure=failed,
                lambda_event=True,
                retries=runtime.spec.async_retries,
            )
            host.deliveries.submit(delivery)
        except BadRequest as error:  # as on Lambda: accepted, then failed in the function
            failed(error)
        return Response(status=202, headers=headers)
    tail = request.headers.get("X-Amz-Log-Type") == "Tail"
    started = time.perf_counter()
    try:
        arguments = lambda_arguments(runtime, payload)
        result = runtime.call(arguments, may_queue=False, request_id=request_id, lambda_event=True, tail=tail)
    except QueueFull:
        return lambda_error(
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
            request_id,
            Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
        )
    except LambdapoolError as error:
        headers["X-Amz-Function-Error"] = "Unhandled"
        if tail:
            elapsed_ms = (time.perf_counter() - started) * 1000
            text = log_tail(runtime, request_id, error.call_log, elapsed_ms, None)
            headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()).decode()
        return json_response(function_error_payload(error, request_id, runtime), 200, headers)
    if tail:
        init_ms = result.timing["coldStart"] if result.api_context["coldStart"] else None
        text = log_tail(runtime, request_id, result.log, result.timing["execution"], init_ms)
        headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()).decode()
    return json_response(result.result, 200, headers)


def _event_failed(runtime: EndpointRuntime) -> Callable[[LambdapoolError], None]:
    def failed(error: LambdapoolError) -> None:
        """Like Lambda, an asynchronous invocation's result goes nowhere and its failure is logged."""
        log.warning(
            "asynchronous invocation of %s failed: %s: %s", runtime.spec.lambda_name, error.type_name(), error.message
        )

    return failed
