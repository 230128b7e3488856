"""API Gateway's limits on a route (``lambdapool._gateway``): sizes measured against Chalice's own response
encoding and the JSON the Lambda runtime writes, exact at the limit."""

from __future__ import annotations

import base64
import json

import pytest
from chalice.app import Chalice, Response

from lambdapool._errors import PayloadTooLarge, ResponseSizeTooLarge
from lambdapool._gateway import (
    CHALICE_BINARY_TYPES,
    GatewayTimeout,
    check_event,
    check_response,
    encoded_event_size,
    encoded_response_size,
    is_binary,
)
from lambdapool._limits import SYNC_PAYLOAD_LIMIT_BYTES, SYNC_RESPONSE_LIMIT_BYTES

JSON = {"Content-Type": "application/json"}


def chalice_response_size(body: str | bytes, headers: dict[str, str], status: int = 200) -> int:
    """What a Chalice API handler returns for this answer, as the Lambda Python 3.11 runtime writes it."""
    as_dict = Response(body=body, headers=headers, status_code=status).to_dict(Chalice("t").api.binary_types)
    return len(json.dumps(as_dict).encode())


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ('{"response":[1,2,3]}', JSON),
        ('{"response":"quotes \\" and \\\\ backslashes, \\u00e9"}', JSON),
        ("plain text with é and a\ttab", {"Content-Type": "text/plain"}),
        (b"\x00\x01binary\xff" * 10, {"Content-Type": "application/octet-stream"}),
    ],
)
def test_the_encoded_response_size_is_what_chalice_and_the_runtime_write(
    body: str | bytes, headers: dict[str, str]
) -> None:
    assert encoded_response_size(200, headers, body) == chalice_response_size(body, headers)


def test_the_chalice_binary_types_are_chalices_defaults() -> None:
    assert list(CHALICE_BINARY_TYPES) == Chalice("t").api.binary_types


def test_a_result_of_short_strings_fails_once_escaped_well_under_6_mb() -> None:
    result = json.dumps(["a"] * 1_100_000, separators=(",", ":"))  # 4.4 MB; each 4 bytes escape to 6
    envelope = '{"response":' + result + "}"
    assert len(envelope) < 4.5 * 2**20

    with pytest.raises(ResponseSizeTooLarge) as raised:
        check_response(200, JSON, envelope)

    error = raised.value
    assert (error.status, error.type_name()) == (500, "Function.ResponseSizeTooLarge")
    size = chalice_response_size(envelope, JSON)
    limit = SYNC_RESPONSE_LIMIT_BYTES
    assert error.message == (
        f"Response payload size ({size} bytes) exceeded maximum allowed payload size ({limit} bytes)."
    )
    assert f"route's body ({len(envelope)} bytes)" in error.detailed_message


def test_the_response_limit_holds_to_the_byte() -> None:
    overhead = encoded_response_size(200, JSON, "")
    at_limit = "a" * (SYNC_RESPONSE_LIMIT_BYTES - overhead)
    assert encoded_response_size(200, JSON, at_limit) == SYNC_RESPONSE_LIMIT_BYTES

    check_response(200, JSON, at_limit)  # passes
    with pytest.raises(ResponseSizeTooLarge):
        check_response(200, JSON, at_limit + "a")


def test_a_small_response_is_not_encoded_at_all() -> None:
    class Unencodable(str):
        def __len__(self) -> int:
            return 10

    check_response(200, JSON, Unencodable("x"))  # the fast path never looks past the length


def test_the_event_holds_the_body_escaped_and_the_headers_twice() -> None:
    headers = {"Content-Type": "application/json", "X-Long": "v" * 1000}
    body = b'{"x": "say \\"hi\\""}'

    size = encoded_event_size("POST", "/public/api/v1/s/e/run", headers, body)

    without = encoded_event_size("POST", "/public/api/v1/s/e/run", {"Content-Type": "application/json"}, body)
    assert size - without == (len('"X-Long":"",') + 1000) + (len('"X-Long":[""],') + 1000)  # headers, multi
    escaped = json.dumps(body.decode(), ensure_ascii=False)
    assert size - encoded_event_size("POST", "/public/api/v1/s/e/run", headers, b"") == len(escaped) - len("null")


def test_an_event_whose_escaped_body_is_over_6_mb_is_refused_though_the_body_is_under() -> None:
    body = json.dumps({"rows": ['"q"'] * 500_000}).encode()  # 4.5 MB: each '"\"q\""' escapes to twice as long
    assert len(body) < SYNC_PAYLOAD_LIMIT_BYTES

    with pytest.raises(PayloadTooLarge) as raised:
        check_event("POST", "/r", JSON, body)

    assert raised.value.status == 413
    assert raised.value.message.startswith(f"request body ({len(body)} bytes) makes an API Gateway event of ")


def test_a_binary_body_travels_base64_in_the_event() -> None:
    raw = bytes(range(256)) * 19_000  # 4.9 MB: 6.5 MB in base64
    binary = {"Content-Type": "application/octet-stream"}

    with pytest.raises(PayloadTooLarge):
        check_event("POST", "/r", binary, raw)

    size = encoded_event_size("POST", "/r", binary, raw)
    assert size - encoded_event_size("POST", "/r", binary, b"") == len(base64.b64encode(raw)) + 2 - len("null")


@pytest.mark.parametrize(
    ("content_type", "binary"),
    [
        ("application/octet-stream", True),
        ("image/png; charset=binary", True),
        ("IMAGE/JPEG", True),
        ("application/json", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_binary_content_types_are_chalices(content_type: str | None, binary: bool) -> None:
    assert is_binary(content_type) is binary


def test_wildcard_binary_types_match() -> None:
    assert is_binary("image/webp", ["image/*"]) and is_binary("text/csv", ["*/*"])
    assert not is_binary("text/csv", ["image/*"])


def test_the_gateway_timeout_is_api_gateways_body() -> None:
    error = GatewayTimeout.after(29)

    assert (error.status, error.to_body(), error.headers()) == (504, {"message": "Endpoint request timed out"}, {})
    assert json.loads(error.to_json()) == {"message": "Endpoint request timed out"}


def test_the_query_string_counts_in_the_event_parsed_or_as_sent() -> None:
    as_sent = encoded_event_size("GET", "/r", {}, b"", query="a=1&a=2&b=")
    parsed = encoded_event_size("GET", "/r", {}, b"", query={"a": ["1", "2"], "b": [""]})

    assert as_sent == parsed > encoded_event_size("GET", "/r", {}, b"")
    with pytest.raises(PayloadTooLarge):
        check_event("GET", "/r", {}, b"", query="q=" + "x" * (4 * 2**20))  # twice in the event: single and multi


@pytest.mark.parametrize(
    ("headers", "binary_types"),
    [
        (JSON, ["*/*"]),
        (JSON, ["application/json"]),
        ({"Content-Type": "image/png"}, ["image/png"]),
        ({"Content-Type": "text/plain; charset=utf-8"}, ["text/plain"]),
        ({"Content-Type": "image/png"}, ["image/*"]),  # Chalice matches no partial wildcard: not encoded
    ],
)
def test_the_response_is_base64_exactly_when_chalice_encodes_it(
    headers: dict[str, str], binary_types: list[str]
) -> None:
    body = '{"response":"' + "x" * 3000 + '"}'
    as_dict = Response(body=body.encode(), headers=headers).to_dict(binary_types)
    if not as_dict.get("isBase64Encoded"):
        as_dict = Response(body=body, headers=headers).to_dict(binary_types)

    assert encoded_response_size(200, headers, body, binary_types) == len(json.dumps(as_dict).encode())
