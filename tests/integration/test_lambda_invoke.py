"""boto3's Lambda client against the emulator's Invoke API: results, function errors, throttling, Event."""

from __future__ import annotations

import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Client, wait_until

pytestmark = pytest.mark.integration


def lambda_client(emulator: Client, access_key_id: str = "testing"):
    return boto3.client(
        "lambda",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key="testing",
        # No client-side retries: the test wants to see each throttle.
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


def test_a_keyed_service_takes_its_key_as_boto3_access_key_id_and_refuses_others(behaviours: Client) -> None:
    answer = lambda_client(behaviours, "s3cr3t-key").invoke(FunctionName="secured-hello", Payload=b'{"name": "ada"}')
    assert json.loads(answer["Payload"].read()) == "hello ada"
    with pytest.raises(ClientError) as refused:
        lambda_client(behaviours, "testing").invoke(FunctionName="secured-hello", Payload=b"{}")
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_request_response_returns_the_result(behaviours: Client) -> None:
    client = lambda_client(behaviours)
    answer = client.invoke(FunctionName="b-echo", Payload=json.dumps({"x": 41, "y": 1}))
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["x"] == 41
    # The name Chalice deploys it under, and its ARN, reach the same function.
    for name in ("behaviours-dev-b-echo", "arn:aws:lambda:us-east-1:123456789012:function:behaviours-dev-b-echo"):
        assert json.loads(client.invoke(FunctionName=name, Payload=b'{"x": 2}')["Payload"].read())["x"] == 2


def test_a_raising_function_sets_function_error(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-fail", Payload=json.dumps({"message": "nope"}))
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "nope"
    assert any("raise ValueError" in line for line in body["stackTrace"])


def test_bad_parameters_are_a_function_error_named_bad_request(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-pair", Payload=b'{"unknown": 1}')
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "BadRequest"


def test_invokes_above_ceil_are_throttled_not_queued(behaviours: Client, tmp_path: Path) -> None:
    # gated_short_queue: ceil=1 and a queue, which the Invoke API does not use (Lambda has none).
    client = lambda_client(behaviours)
    gate = tmp_path / "gate"
    behaviours.wait_for_pool("b", "gated_short_queue", idle=1)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            client.invoke, FunctionName="b-gated_short_queue", Payload=json.dumps({"gate": str(gate)})
        )
        behaviours.wait_for_pool("b", "gated_short_queue", busy=1)
        with pytest.raises(client.exceptions.TooManyRequestsException) as throttled:
            client.invoke(FunctionName="b-gated_short_queue", Payload=json.dumps({"gate": str(gate)}))
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert behaviours.endpoint_status("b", "gated_short_queue")["queue"]["depth"] == 0
        gate.touch()
        assert json.loads(running.result()["Payload"].read()) == "done"


def test_event_invocations_answer_202_and_run(behaviours: Client, tmp_path: Path) -> None:
    gate, log = tmp_path / "gate", tmp_path / "log"
    gate.touch()
    answer = lambda_client(behaviours).invoke(
        FunctionName="b-gated",
        InvocationType="Event",
        Payload=json.dumps({"tag": "async", "gate": str(gate), "log": str(log)}),
    )
    assert answer["StatusCode"] == 202
    wait_until(lambda: log.exists() and log.read_text().split() == ["async"])
    wait_until(lambda: behaviours.endpoint_status("b", "gated")["counters"]["succeeded"] == 1)


def test_event_invocations_beyond_the_pool_are_all_run_in_order(behaviours: Client, tmp_path: Path) -> None:
    # b/gated_one has ceil=1, queue=1: thirty events must wait for it, never be dropped, and run in
    # the order they were accepted.
    gate, log = tmp_path / "gate", tmp_path / "log"
    client = lambda_client(behaviours)
    tags = [f"e{number:02d}" for number in range(30)]
    for tag in tags:
        payload = json.dumps({"tag": tag, "gate": str(gate), "log": str(log)})
        assert client.invoke(FunctionName="b-gated_one", InvocationType="Event", Payload=payload)["StatusCode"] == 202
    status = behaviours.endpoint_status("b", "gated_one")
    assert status["asyncQueue"]["depth"] >= 28 and status["queue"]["depth"] == 0
    gate.touch()
    wait_until(lambda: behaviours.endpoint_status("b", "gated_one")["counters"]["succeeded"] == 30)
    assert log.read_text().split() == tags


def test_an_unknown_function_is_resource_not_found(behaviours: Client) -> None:
    client = lambda_client(behaviours)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="b-nope", Payload=b"{}")


def test_a_payload_that_is_not_an_object_reaches_the_function_which_refuses_it(behaviours: Client) -> None:
    client = lambda_client(behaviours)
    answer = client.invoke(FunctionName="b-echo", Payload=b"[1, 2]")
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "BadRequest"
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="b-echo", Payload=b"[1, 2")


@pytest.mark.parametrize(
    ("endpoint", "payload", "error_type", "message"),
    [
        ("hang", {}, "Sandbox.Timedout", r"RequestId: (?P<id>[0-9a-f-]{36}) Error: Task timed out after 1\.00 seconds"),
        (
            "hard_exit",
            {"code": 3},
            "Runtime.ExitError",
            r"RequestId: (?P<id>[0-9a-f-]{36}) Error: Runtime exited with error: exit status 3",
        ),
        (
            "segfault",
            {},
            "Runtime.ExitError",
            r"RequestId: (?P<id>[0-9a-f-]{36}) Error: Runtime exited with error: signal: segmentation fault",
        ),
        (
            "hog",
            {"megabytes": 300},
            "Runtime.OutOfMemory",
            r"RequestId: (?P<id>[0-9a-f-]{36}) Error: Runtime exited with error: signal: killed",
        ),
    ],
    ids=["timeout", "exit", "segfault", "out-of-memory"],
)
def test_runtime_failures_answer_lambdas_payloads(
    behaviours: Client, endpoint: str, payload: dict, error_type: str, message: str
) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName=f"b-{endpoint}", Payload=json.dumps(payload))
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == error_type
    matched = re.fullmatch(message, body["errorMessage"])
    assert matched, body["errorMessage"]
    assert matched.group("id") == answer["ResponseMetadata"]["RequestId"]  # Lambda's x-amzn-RequestId


def test_a_qualified_name_and_the_latest_version_reach_the_function(behaviours: Client) -> None:
    client = lambda_client(behaviours)
    assert json.loads(client.invoke(FunctionName="b-echo:$LATEST", Payload=b'{"x": 1}')["Payload"].read())["x"] == 1
    assert (
        json.loads(client.invoke(FunctionName="b-echo", Qualifier="$LATEST", Payload=b'{"x": 2}')["Payload"].read())[
            "x"
        ]
        == 2
    )
    for name, qualifier in (("b-echo:live", None), ("b-echo", "7")):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName=name, Payload=b"{}", **({"Qualifier": qualifier} if qualifier else {}))


def test_a_result_over_6_mb_is_lambdas_response_size_error(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-big", Payload=b'{"megabytes": 7}')
    assert answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert body["errorMessage"].endswith("exceeded maximum allowed payload size (6291556 bytes).")


def test_a_failing_event_invocation_is_tried_three_times_as_lambda_retries_it(behaviours: Client) -> None:
    # The emulator of these tests scales Lambda's retry delays (1 and 2 minutes) down to 50 and 100 ms.
    answer = lambda_client(behaviours).invoke(
        FunctionName="b-fail", InvocationType="Event", Payload=b'{"message": "no"}'
    )
    assert answer["StatusCode"] == 202
    wait_until(lambda: behaviours.endpoint_status("b", "fail")["counters"]["failed"] == 3)
    counters = behaviours.endpoint_status("b", "fail")["counters"]
    assert (counters["calls"], counters["asyncRetries"]) == (3, 2)


def _log_tail(answer: dict) -> str:
    return base64.b64decode(answer["LogResult"]).decode()


def test_log_type_tail_returns_the_calls_output_between_start_end_and_report(behaviours: Client) -> None:
    client = lambda_client(behaviours)
    answer = client.invoke(FunctionName="b-chatty", Payload=b'{"lines": 2}', LogType="Tail")
    request_id = answer["ResponseMetadata"]["RequestId"]
    log = _log_tail(answer)
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert lines[1:3] == [f"line 0 of {request_id}", f"line 1 of {request_id}"]
    assert "logged through the context" in log and "to stderr" in lines
    assert lines[-2] == f"END RequestId: {request_id}"
    report = re.fullmatch(
        rf"REPORT RequestId: {request_id}\tDuration: [0-9.]+ ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\t"
        r"Max Memory Used: (\d+) MB\t(Init Duration: [0-9.]+ ms\t)?",
        lines[-1],
    )
    assert report, lines[-1]
    assert 5 <= int(report.group(1)) <= 128  # the pipeline's own resident memory, as Lambda measures it
    # The next call's tail holds only its own output.
    again = client.invoke(FunctionName="b-chatty", Payload=b'{"lines": 1}', LogType="Tail")
    assert "line 1 of" not in _log_tail(again) and f"line 0 of {again['ResponseMetadata']['RequestId']}" in _log_tail(
        again
    )
    # Without LogType the answer has no log.
    assert "LogResult" not in client.invoke(FunctionName="b-chatty", Payload=b"{}")


def test_log_type_tail_of_a_failed_call_has_its_output_and_the_error(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-chatty", Payload=b'{"fail": true}', LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    log = _log_tail(answer)
    assert "line 0 of" in log and "[ERROR] KeyError: 'missing'" in log and "Traceback (most recent call last)" in log
    assert log.splitlines()[-1].startswith("REPORT RequestId: ")


def test_log_type_tail_keeps_the_last_4_kb_as_lambda_does(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-chatty", Payload=b'{"lines": 500}', LogType="Tail")
    log = _log_tail(answer)
    assert len(log.encode()) <= 4096
    assert "line 499 of" in log and "line 0 of" not in log and "START RequestId" not in log
    assert log.splitlines()[-1].startswith("REPORT RequestId: ")


def test_log_type_tail_of_a_call_killed_at_its_timeout_reports_its_duration(behaviours: Client) -> None:
    answer = lambda_client(behaviours).invoke(FunctionName="b-hang", Payload=b"{}", LogType="Tail")
    assert json.loads(answer["Payload"].read())["errorType"] == "Sandbox.Timedout"
    duration = re.search(r"\tDuration: ([0-9.]+) ms", _log_tail(answer))
    assert duration and float(duration.group(1)) >= 1000  # hang has timeout_s=1
