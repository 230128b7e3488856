"""A test project that reports what a function sees of its execution environment: Lambda's variables, the
time zone, the context object, and a schedule's event."""

import os
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="conformance")
svc = Service("env")

VARIABLES = (
    "TZ",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
)
#: What init code (the cold start) sees.
INIT = {"tz": time.strftime("%Z"), "tzname": list(time.tzname), "handler": os.environ.get("_HANDLER")}


def describe_context(context):
    identity = context.identity
    return {
        "request_id": context.request_id,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": None if identity is None else [identity.cognito_identity_id, identity.cognito_identity_pool_id],
        "client_context": context.client_context,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "service_id": context.service_id,
        "endpoint_id": context.endpoint_id,
        "pipeline_id": context.pipeline_id,
        "cold_start": context.cold_start,
    }


@svc.function(memory_mb=256, timeout_s=30, pool=Pool(floor=1, ceil=1, cruise=1))
def describe(context):
    return {
        "environment": {name: os.environ.get(name) for name in VARIABLES},
        "tz": time.strftime("%Z"),
        "tzname": list(time.tzname),
        "utcOffsetS": time.timezone,
        "init": INIT,
        "context": describe_context(context),
    }


@svc.schedule("rate(1 day)", pool=Pool(floor=1, ceil=1, cruise=1))
def nightly(event, context):
    # event.context is the call's context in the emulator and Lambda's own object deployed: read only what
    # both carry
    lambdas = ("aws_request_id", "function_name", "invoked_function_arn", "log_stream_name")
    return {
        "eventContext": None if event.context is None else {name: getattr(event.context, name) for name in lambdas},
        "context": describe_context(context),
    }


mount(app, svc)
