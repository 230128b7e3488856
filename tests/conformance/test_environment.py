"""DESIGN 3.1, "a pipeline is a Lambda execution environment": Lambda's environment variables, ``TZ`` in
effect, the context object's attributes and a trigger event's ``context``, with the values the deployed
function would see; and, deployed, the context built from Lambda's own context object."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from types import ModuleType
from typing import Any

import pytest
import requests
from chalice.test import Client as ChaliceClient

from lambdapool._model import EndpointSpec
from lambdapool.emulator import Emulator
from lambdapool.emulator.project._project import Project

from .conftest import ENVIRONMENT_APP, HOST_REGION, HOST_TZ

APP = "conformance"  # .chalice/config.json's app_name
DESCRIBE = f"{APP}-dev-env-describe"  # {app}-{stage}-{service}-{endpoint}
NIGHTLY = f"{APP}-dev-env-nightly"
ACCOUNT = "123456789012"
LOG_STREAM = re.compile(r"(\d{4}/\d{2}/\d{2})/\[\$LATEST\][0-9a-f]{32}")


def run(emulator: Emulator, endpoint: str) -> dict[str, Any]:
    answer = requests.post(f"{emulator.url}/public/api/v1/env/{endpoint}/run", json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    response: dict[str, Any] = answer.json()["response"]
    return response


def fire(emulator: Emulator, endpoint: str) -> dict[str, Any]:
    answer = requests.post(f"{emulator.url}/__lambdapool__/schedules/env/{endpoint}/fire", timeout=60)
    assert answer.status_code == 200, answer.text
    response: dict[str, Any] = answer.json()["response"]
    return response


def check_log_stream(name: str, dates: set[str]) -> None:
    match = LOG_STREAM.fullmatch(name)
    assert match, name
    assert match.group(1) in dates  # the UTC date the execution environment started


@pytest.mark.integration
def test_a_pipeline_has_lambdas_variables_with_the_deployed_functions_values(
    environment_emulator: tuple[Emulator, set[str]],
) -> None:
    emulator, dates = environment_emulator
    environment = run(emulator, "describe")["environment"]
    stream = environment.pop("AWS_LAMBDA_LOG_STREAM_NAME")
    check_log_stream(stream, dates)
    assert environment == {
        "TZ": ":UTC",  # Lambda's value, not the host's
        "AWS_REGION": HOST_REGION,  # the region the environment names, where the function would be deployed
        "AWS_DEFAULT_REGION": HOST_REGION,
        "AWS_LAMBDA_FUNCTION_NAME": DESCRIBE,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",  # the endpoint's memory_mb
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{DESCRIBE}",
        "_HANDLER": "app.lambdapool_env__describe",  # the handler Chalice deploys (lambdapool.chalice.handler_name)
        "LAMBDA_TASK_ROOT": str(ENVIRONMENT_APP.resolve()),  # the code, as /var/task holds it on Lambda
    }


@pytest.mark.integration
def test_utc_is_the_time_zone_of_init_code_and_calls_whatever_the_hosts(
    environment_emulator: tuple[Emulator, set[str]],
) -> None:
    emulator, _ = environment_emulator
    assert os.environ["TZ"] == HOST_TZ  # the emulator runs in another time zone
    answer = run(emulator, "describe")
    assert (answer["tz"], answer["tzname"], answer["utcOffsetS"]) == ("UTC", ["UTC", "UTC"], 0)
    assert answer["init"] == {"tz": "UTC", "tzname": ["UTC", "UTC"], "handler": "app.lambdapool_env__describe"}


@pytest.mark.integration
def test_the_context_has_lambdas_attributes_with_the_deployed_functions_values(
    environment_emulator: tuple[Emulator, set[str]],
) -> None:
    emulator, _ = environment_emulator
    answer = run(emulator, "describe")
    context = answer["context"]
    assert 0 < context.pop("remaining_ms") <= 30_000
    assert context.pop("pipeline_id").startswith("env-describe-")
    request_id = context.pop("request_id")
    context.pop("cold_start")
    assert context == {
        "aws_request_id": request_id,
        "function_name": DESCRIBE,
        "function_version": "$LATEST",
        "invoked_function_arn": f"arn:aws:lambda:{HOST_REGION}:{ACCOUNT}:function:{DESCRIBE}",
        "memory_limit_in_mb": 256,
        "log_group_name": f"/aws/lambda/{DESCRIBE}",
        "log_stream_name": answer["environment"]["AWS_LAMBDA_LOG_STREAM_NAME"],
        "identity": [None, None],  # Lambda's CognitoIdentity, empty for a call not from the AWS Mobile SDK
        "client_context": None,
        "service_id": "env",
        "endpoint_id": "describe",
    }


@pytest.mark.integration
def test_the_invoke_apis_request_id_is_the_contexts_aws_request_id(
    environment_emulator: tuple[Emulator, set[str]],
) -> None:
    emulator, _ = environment_emulator
    answer = requests.post(f"{emulator.url}/2015-03-31/functions/{DESCRIBE}/invocations", data=b"{}", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["context"]["aws_request_id"] == answer.headers["x-amzn-RequestId"]


@pytest.mark.integration
def test_an_execution_environment_keeps_one_log_stream_and_another_has_its_own(
    environment_emulator: tuple[Emulator, set[str]],
) -> None:
    emulator, dates = environment_emulator
    first, second = run(emulator, "describe")["context"], run(emulator, "describe")["context"]
    assert first["pipeline_id"] == second["pipeline_id"]  # a pool of one pipeline
    assert first["log_stream_name"] == second["log_stream_name"]
    assert first["aws_request_id"] != second["aws_request_id"]
    scheduled = fire(emulator, "nightly")["context"]
    check_log_stream(scheduled["log_stream_name"], dates)
    assert scheduled["log_stream_name"] != first["log_stream_name"]


@pytest.mark.integration
def test_a_schedule_event_carries_the_invocation_context(environment_emulator: tuple[Emulator, set[str]]) -> None:
    emulator, _ = environment_emulator
    answer = fire(emulator, "nightly")
    context = answer["context"]
    assert (context["function_name"], context["log_group_name"]) == (NIGHTLY, f"/aws/lambda/{NIGHTLY}")
    assert answer["eventContext"] == {
        "aws_request_id": context["aws_request_id"],
        "function_name": NIGHTLY,
        "invoked_function_arn": f"arn:aws:lambda:{HOST_REGION}:{ACCOUNT}:function:{NIGHTLY}",
        "log_stream_name": context["log_stream_name"],
    }


# -- in process: the environment each pipeline is started with --------------------------------------------


def test_each_pipeline_is_a_new_execution_environment_with_a_log_stream_of_its_own() -> None:
    project = Project.load(ENVIRONMENT_APP)
    spec = EndpointSpec("env", "describe", memory_mb=256)
    first, second = (project.pipeline_config(spec, f"env-describe-{n}").environment for n in (1, 2))
    assert first["AWS_LAMBDA_LOG_STREAM_NAME"] != second["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert {**first, "AWS_LAMBDA_LOG_STREAM_NAME": ""} == {**second, "AWS_LAMBDA_LOG_STREAM_NAME": ""}
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y/%m/%d")
    check_log_stream(first["AWS_LAMBDA_LOG_STREAM_NAME"], {today, time.strftime("%Y/%m/%d", time.gmtime())})


def test_the_region_is_the_local_aws_then_the_hosts_then_us_east_1(monkeypatch: pytest.MonkeyPatch) -> None:
    project = Project.load(ENVIRONMENT_APP)
    spec = EndpointSpec("env", "describe")

    def region(aws_environment: dict[str, str] | None = None) -> tuple[str, str, str]:
        environment = project.pipeline_config(spec, aws_environment=aws_environment).environment
        return environment["AWS_REGION"], environment["AWS_DEFAULT_REGION"], environment["AWS_LAMBDA_FUNCTION_NAME"]

    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert region() == ("us-east-1", "us-east-1", DESCRIBE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert region() == ("eu-west-1", "eu-west-1", DESCRIBE)
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert region() == ("ap-south-1", "ap-south-1", DESCRIBE)
    assert region({"AWS_DEFAULT_REGION": "us-west-2"}) == ("us-west-2", "us-west-2", DESCRIBE)  # moto's


def test_a_functions_own_tz_wins_as_on_lambda_where_tz_is_not_reserved_and_the_reserved_ones_do_not() -> None:
    def environment(variables: dict[str, str]) -> dict[str, str]:
        project = Project(ENVIRONMENT_APP.resolve(), "dev", {"app_name": APP, "environment_variables": variables})
        return dict(project.pipeline_config(EndpointSpec("env", "describe")).environment)

    assert environment({"TZ": "Asia/Tokyo"})["TZ"] == "Asia/Tokyo"
    reserved = environment({"AWS_LAMBDA_FUNCTION_NAME": "mine", "_HANDLER": "mine.handler"})
    assert (reserved["AWS_LAMBDA_FUNCTION_NAME"], reserved["_HANDLER"]) == (DESCRIBE, "app.lambdapool_env__describe")


# -- in process: the adapter's Lambda handlers, deployed --------------------------------------------------


class FakeLambdaContext:
    """A stand-in for the context object Lambda passes a handler: no Lambda runs in these tests, so this is
    the one place a stand-in is used. Its attributes are those of Lambda's Python runtime (which gives the
    memory size as a string)."""

    aws_request_id = "8f5d3c3e-1b7a-4c1e-9d51-0e6f2a7b9c10"
    invoked_function_arn = f"arn:aws:lambda:eu-central-1:210987654321:function:{DESCRIBE}"
    function_name = DESCRIBE
    function_version = "7"
    log_group_name = f"/aws/lambda/{DESCRIBE}"
    log_stream_name = "2024/05/17/[7]0123456789abcdef0123456789abcdef"
    memory_limit_in_mb = "256"

    def get_remaining_time_in_millis(self) -> int:
        return 12_000


def test_deployed_the_context_comes_from_lambdas_context_object(environment_module: ModuleType) -> None:
    handler = environment_module.lambdapool_env__describe
    lambda_context = FakeLambdaContext()
    context = handler({}, lambda_context)["context"]
    assert 0 < context.pop("remaining_ms") <= 12_000
    assert context == {
        "request_id": lambda_context.aws_request_id,
        "aws_request_id": lambda_context.aws_request_id,
        "function_name": DESCRIBE,
        "function_version": "7",
        "invoked_function_arn": lambda_context.invoked_function_arn,
        "memory_limit_in_mb": 256,
        "log_group_name": lambda_context.log_group_name,
        "log_stream_name": lambda_context.log_stream_name,
        "identity": [None, None],
        "client_context": None,
        "service_id": "env",
        "endpoint_id": "describe",
        "pipeline_id": "lambda",
        "cold_start": True,
    }
    assert handler({}, lambda_context)["context"]["cold_start"] is False


def test_deployed_a_schedule_gets_lambdas_request_id(environment_module: ModuleType) -> None:
    lambda_context = FakeLambdaContext()
    raw_event = {
        "version": "0",
        "id": "event-1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2024-05-17T12:00:00Z",
        "region": "eu-central-1",
        "resources": [f"arn:aws:events:eu-central-1:{ACCOUNT}:rule/{NIGHTLY}-event"],
        "detail": {},
    }
    answer = environment_module.lambdapool_env__nightly(raw_event, lambda_context)
    assert answer["context"]["aws_request_id"] == lambda_context.aws_request_id
    assert answer["context"]["invoked_function_arn"] == lambda_context.invoked_function_arn
    assert answer["eventContext"]["aws_request_id"] == lambda_context.aws_request_id  # Lambda's own object


def test_under_chalice_test_the_names_are_derived_as_in_the_emulator(
    environment_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("LAMBDAPOOL_FORWARD", "0")  # run routes call the function in process
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with ChaliceClient(environment_module.app, project_dir=str(ENVIRONMENT_APP)) as client:
        # chalice.test passes a stand-in context of its own: its blank ARN and log names are derived
        invoked = client.lambda_.invoke("env-describe", {}).payload["context"]
        assert (invoked["function_name"], invoked["invoked_function_arn"], invoked["log_group_name"]) == (
            "env-describe",
            f"arn:aws:lambda:eu-west-3:{ACCOUNT}:function:env-describe",
            "/aws/lambda/env-describe",
        )
        check_log_stream(invoked["log_stream_name"], {time.strftime("%Y/%m/%d", time.gmtime())})
        routed = client.http.post("/public/api/v1/env/describe/run", body=b"{}").json_body["response"]["context"]
        assert (routed["function_name"], routed["memory_limit_in_mb"], routed["identity"]) == (
            "env-describe",
            256,
            [None, None],
        )
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", DESCRIBE)  # the deployed name, where it is set
        routed = client.http.post("/public/api/v1/env/describe/run", body=b"{}").json_body["response"]["context"]
        assert routed["invoked_function_arn"] == f"arn:aws:lambda:eu-west-3:{ACCOUNT}:function:{DESCRIBE}"
