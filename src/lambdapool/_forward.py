"""Forwarding a call from a deployed run route to the endpoint's own Lambda function, with boto3.

A throttled invoke (the function's reserved concurrency, its ``ceil``, is in use) is retried with jittered
backoff until the pool's ``timeout_ms``, then answered 429 ``QueueTimeout``; a function error Lambda reports
is mapped to the error the emulator answers for the same failure. boto3 (which the Lambda runtime provides)
is imported only when a client is first needed: this module goes into Lambda packages.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
from typing import Any

from ._errors import LambdapoolError, OutOfMemory, PipelineCrashed, QueueTimeout, Timeout, error_from_body
from ._model import Endpoint

__all__ = ["Forwarded", "aws_client", "forward", "forwarding_enabled", "function_name", "on_lambda"]

_INIT_DURATION = re.compile(r"Init Duration: ([0-9.]+) ms")
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENT_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
)
#: The alias that carries provisioned concurrency, when the stage opts in (``lambdapool config --provisioned``).
QUALIFIER_VARIABLE = "LAMBDAPOOL_FUNCTION_QUALIFIER"


def on_lambda() -> bool:
    """Whether the routes run on AWS (not under ``chalice local`` or ``chalice.test.Client``).
    ``LAMBDAPOOL_FORWARD=0/1`` overrides."""
    override = os.environ.get("LAMBDAPOOL_FORWARD")
    if override is not None:
        return override not in ("", "0", "false", "False")
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_CHALICE_CLI_MODE")


def forwarding_enabled(endpoint: Endpoint) -> bool:
    """Whether a route forwards to the endpoint's own function: on AWS, unless the endpoint is ``inline``."""
    return not endpoint.inline and on_lambda()


def function_name(endpoint: Endpoint) -> str:
    """The endpoint's deployed function, ``{app}-{stage}-{service}-{endpoint}``: the API handler that runs
    the route is deployed as ``{app}-{stage}``, and Chalice names its sibling functions after it."""
    api_handler = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return f"{api_handler}-{endpoint.lambda_name}"


def aws_client(service: str, read_timeout_s: int = 60) -> Any:
    """A boto3 client, created once per process and settings (creating one costs tens of milliseconds).

    Keyed by the environment's endpoint, region and credentials: a warm Lambda reuses it, and a process whose
    settings change (tests pointing at another local AWS) gets a new one.
    """
    key = (service, read_timeout_s, *(os.environ.get(name) for name in _CLIENT_SETTINGS))
    client = _CLIENTS.get(key)
    if client is None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout_s, connect_timeout=5)
        client = _CLIENTS[key] = boto3.session.Session().client(service, config=config)
    return client


def lambda_client(endpoint: Endpoint) -> Any:
    """A Lambda client whose read timeout outlasts the endpoint's ``timeout_s``."""
    return aws_client("lambda", endpoint.timeout_s + 5)


class Forwarded:
    """A forwarded call's result, with the envelope's ``timing`` (ms) and ``apiContext`` parts."""

    def __init__(self, result: Any, timing: dict[str, float], api_context: dict[str, Any]):
        self.result = result
        self.timing = timing
        self.api_context = api_context


def forward(endpoint: Endpoint, arguments: dict[str, Any], started: float) -> Forwarded:
    """Invoke the endpoint's function synchronously (``started`` is the route's ``time.perf_counter()``);
    retry throttles until ``timeout_ms``. Raises the :class:`LambdapoolError` the call ended with."""
    client = lambda_client(endpoint)
    name = function_name(endpoint)
    payload = json.dumps(arguments).encode()
    qualifier = os.environ.get(QUALIFIER_VARIABLE)
    extra = {"Qualifier": qualifier} if qualifier else {}
    give_up = time.monotonic() + endpoint.pool.timeout_ms / 1000
    delay_s = 0.05
    while True:
        invoked = time.perf_counter()
        try:
            answer = client.invoke(FunctionName=name, Payload=payload, LogType="Tail", **extra)
            break
        except client.exceptions.TooManyRequestsException:
            if time.monotonic() + delay_s > give_up:
                raise QueueTimeout.waited(endpoint.where, endpoint.pool.timeout_ms, retry_after_s=1) from None
            time.sleep(random.uniform(0, delay_s))  # full jitter
            delay_s = min(delay_s * 2, 1.0)
    finished = time.perf_counter()
    body = answer["Payload"].read()
    init = _INIT_DURATION.search(base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace"))
    cold_ms = float(init.group(1)) if init else 0.0
    if answer.get("FunctionError"):
        raise function_error(json.loads(body or b"{}"))
    timing = {"wait": ms(invoked - started), "coldStart": cold_ms, "execution": ms(finished - invoked)}
    return Forwarded(json.loads(body or b"null"), timing, {"pipelineId": name, "coldStart": init is not None})


def function_error(body: dict[str, Any]) -> LambdapoolError:
    """The error envelope for a function error Lambda reported (``X-Amz-Function-Error``)."""
    error_type = str(body.get("errorType", ""))
    message = str(body.get("errorMessage", "the function failed"))
    detail = "\n".join(body.get("stackTrace") or []) or message
    if error_type == "Sandbox.Timedout" or (not error_type and "timed out" in message):  # older runtimes: no type
        return Timeout(message, detail)
    if error_type == "Runtime.OutOfMemory":
        return OutOfMemory(message, detail)
    if error_type.startswith("Runtime."):  # Runtime.ExitError and the like: the process died
        return PipelineCrashed(message, detail)
    return error_from_body({"errorType": error_type or "Error", "message": message, "detailedMessage": detail})


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded to the microsecond (the envelope's ``timing`` unit)."""
    return round(seconds * 1000, 3)
