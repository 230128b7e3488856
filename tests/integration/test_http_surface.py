"""Bad input gets the status and errorType of DESIGN.md, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
import requests

from .conftest import Client

pytestmark = pytest.mark.integration


def _error(answer: requests.Response, status: int, error_type: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert body["errorType"] == error_type
    assert body["message"] and body["detailedMessage"]
    return body


def test_malformed_json_is_a_bad_request(behaviours: Client) -> None:
    _error(behaviours.run("b", "echo", data=b'{"x": 1,'), 400, "BadRequest")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_a_body_that_is_not_an_object_is_a_bad_request(behaviours: Client, body: bytes) -> None:
    message = _error(behaviours.run("b", "echo", data=body), 400, "BadRequest")["message"]
    assert "JSON object" in message


def test_a_body_that_is_not_utf8_is_a_bad_request(behaviours: Client) -> None:
    _error(behaviours.run("b", "echo", data=b'{"x": "\xff"}'), 400, "BadRequest")


def test_a_missing_parameter_is_a_bad_request_naming_the_expected_ones(behaviours: Client) -> None:
    body = _error(behaviours.run("b", "gated", {"tag": "t"}), 400, "BadRequest")
    assert "gate" in body["message"] and "log" in body["message"]
    assert "Expected parameters: tag, gate, log" in body["detailedMessage"]


def test_an_unexpected_parameter_is_a_bad_request(behaviours: Client) -> None:
    body = _error(behaviours.run("b", "pair", {"n": 2, "m": 3}), 400, "BadRequest")
    assert "unexpected parameter(s): m" in body["message"]
    assert "n (optional)" in body["detailedMessage"]


def test_kwargs_take_any_attribute_and_context_is_injected(behaviours: Client) -> None:
    answer = behaviours.run("b", "echo", {"x": 1, "y": [2], "z": {"k": "v"}})
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["x"] == 1 and response["rest"] == {"y": [2], "z": {"k": "v"}}
    assert response["endpoint"] == "echo"
    assert 0 < response["remainingMs"] <= 60_000


def test_context_cannot_be_sent_in_the_body(behaviours: Client) -> None:
    body = _error(behaviours.run("b", "echo", {"context": "forged"}), 400, "BadRequest")
    assert "reserved" in body["message"]


@pytest.mark.parametrize(("service", "endpoint"), [("nope", "echo"), ("b", "nope")])
def test_unknown_service_or_endpoint_is_not_found(behaviours: Client, service: str, endpoint: str) -> None:
    _error(behaviours.run(service, endpoint, {}), 404, "NotFound")


def test_an_unknown_route_is_not_found(behaviours: Client) -> None:
    _error(requests.get(f"{behaviours.url}/no/such/route", timeout=10), 404, "NotFound")


def test_a_body_over_6_mb_is_payload_too_large(behaviours: Client) -> None:
    big = json.dumps({"x": "a" * (6 * 2**20)}).encode()
    body = _error(behaviours.run("b", "echo", data=big), 413, "PayloadTooLarge")
    assert str(6 * 2**20) in body["message"]
    # Chunked, with no Content-Length: the limit still holds.
    chunks = (big[i : i + 2**20] for i in range(0, len(big), 2**20))
    _error(behaviours.run("b", "echo", data=chunks), 413, "PayloadTooLarge")
    assert behaviours.run("b", "echo", {"x": "a" * 2**20}).status_code == 200


def test_a_body_shorter_than_its_content_length_is_a_bad_request(behaviours: Client) -> None:
    host, port = behaviours.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /public/api/v1/b/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["errorType"] == "BadRequest"
    assert behaviours.run("b", "echo", {"x": 1}).status_code == 200


def test_no_body_and_no_content_type_is_an_empty_object(behaviours: Client) -> None:
    host, port = behaviours.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/public/api/v1/b/echo/run", skip_accept_encoding=True)
    connection.endheaders()  # no Content-Type, no Content-Length, no body
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["response"]["x"] is None
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        answer = behaviours.run("b", "echo", data=b'{"x": 5}', headers={"Content-Type": content_type})
        assert answer.json()["response"]["x"] == 5


@pytest.mark.parametrize(
    "auth",
    [None, ("wrong-key", ""), "Bearer wrong-key", "Basic !!notbase64", "Digest abc"],
)
def test_a_missing_or_wrong_api_key_is_unauthorized(behaviours: Client, auth) -> None:
    kwargs = {"headers": {"Authorization": auth}} if isinstance(auth, str) else {"auth": auth}
    _error(behaviours.run("secured", "hello", {}, **kwargs), 401, "Unauthorized")
    # An unknown endpoint of a secured service does not reveal itself without a key.
    _error(behaviours.run("secured", "nope", {}, **kwargs), 401, "Unauthorized")


def test_a_valid_api_key_is_accepted_as_basic_user_or_bearer_token(behaviours: Client) -> None:
    basic = behaviours.run("secured", "hello", {"name": "ada"}, auth=("s3cr3t-key", ""))
    assert basic.status_code == 200 and basic.json()["response"] == "hello ada"
    bearer = behaviours.run("secured", "hello", {}, headers={"Authorization": "Bearer other-key"})
    assert bearer.status_code == 200 and bearer.json()["response"] == "hello world"


def test_the_wrong_method_is_a_405_envelope(behaviours: Client) -> None:
    answer = requests.get(f"{behaviours.url}/public/api/v1/b/echo/run", timeout=10)
    assert answer.status_code == 405 and answer.json()["errorType"] == "MethodNotAllowed"


def test_the_envelope_carries_timing_and_api_context(behaviours: Client) -> None:
    body = behaviours.run("b", "echo", {"x": "y"}).json()
    assert set(body) == {"response", "timing", "apiContext"}
    assert set(body["timing"]) == {"wait", "coldStart", "execution", "total"}
    assert body["timing"]["total"] >= body["timing"]["execution"] >= 0
    assert body["apiContext"]["serviceId"] == "b" and body["apiContext"]["endpointId"] == "echo"
    assert body["apiContext"]["pipelineId"].startswith("b-echo-")


def test_metrics_are_prometheus_text_with_the_pool_figures(behaviours: Client) -> None:
    behaviours.run("b", "echo", {})
    behaviours.run("b", "fail", {})
    text = requests.get(f"{behaviours.url}/metrics", timeout=10).text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("lambdapool_calls_total", (("endpoint", "echo"), ("service", "b")))] == 1
    assert samples[("lambdapool_calls_failed_total", (("endpoint", "fail"), ("service", "b")))] == 1
    assert samples[("lambdapool_call_duration_seconds_count", (("endpoint", "echo"), ("service", "b")))] == 1
    assert ("lambdapool_pipelines", (("endpoint", "echo"), ("service", "b"), ("state", "idle"))) in samples
