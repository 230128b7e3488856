"""The HTTP surface over a real server and real pipelines: what a socket, a chunked upload or a real function
shows. Statuses, error bodies and routes are checked in process in tests/unit/test_http_surface.py."""

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


def test_kwargs_take_any_attribute_and_context_is_injected(behaviours: Client) -> None:
    answer = behaviours.run("b", "echo", {"x": 1, "y": [2], "z": {"k": "v"}})
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["x"] == 1 and response["rest"] == {"y": [2], "z": {"k": "v"}}
    assert response["endpoint"] == "echo"
    assert 0 < response["remainingMs"] <= 60_000


def test_a_body_over_6_mb_is_payload_too_large_and_the_client_gets_the_answer(behaviours: Client) -> None:
    # With a Content-Length, over a real socket: the oversized upload is drained, so the client still
    # sending gets the 413 rather than a reset connection.
    big = json.dumps({"x": "a" * (6 * 2**20)}).encode()
    assert str(6 * 2**20) in _error(behaviours.run("b", "echo", data=big), 413, "PayloadTooLarge")["message"]


def test_a_missing_parameter_names_the_expected_ones_from_the_real_signature(behaviours: Client) -> None:
    # The signature is read from the app's function by the describe step (in process it is hand-written).
    body = _error(behaviours.run("b", "gated", {"tag": "t"}), 400, "BadRequest")
    assert body["message"] == "missing required parameter(s): gate, log"
    assert body["detailedMessage"].endswith("Expected parameters: tag, gate, log")


def test_a_chunked_body_over_6_mb_is_payload_too_large(behaviours: Client) -> None:
    # Chunked, with no Content-Length: the limit still holds.
    big = json.dumps({"x": "a" * (6 * 2**20)}).encode()
    chunks = (big[i : i + 2**20] for i in range(0, len(big), 2**20))
    body = _error(behaviours.run("b", "echo", data=chunks), 413, "PayloadTooLarge")
    assert str(6 * 2**20) in body["message"]
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


def test_a_post_without_content_length_body_or_content_type_is_an_empty_object(behaviours: Client) -> None:
    host, port = behaviours.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/public/api/v1/b/echo/run", skip_accept_encoding=True)
    connection.endheaders()  # no Content-Type, no Content-Length, no body
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["response"]["x"] is None


def test_the_envelope_names_the_real_pipeline_and_its_timing(behaviours: Client) -> None:
    body = behaviours.run("b", "echo", {"x": "y"}).json()
    assert set(body) == {"response", "timing", "apiContext"}
    assert set(body["timing"]) == {"wait", "coldStart", "execution", "total"}
    assert body["timing"]["total"] >= body["timing"]["execution"] >= 0
    assert body["apiContext"]["serviceId"] == "b" and body["apiContext"]["endpointId"] == "echo"
    assert body["apiContext"]["pipelineId"].startswith("b-echo-")
    processes = behaviours.endpoint_status("b", "echo")["pipelines"]["processes"]
    assert body["apiContext"]["pipelineId"] in [process["pipelineId"] for process in processes]
