"""What API Gateway does to a route, as deployed: its integration timeout and the encoded size of the Lambda
proxy event and response.

A route reaches its code through API Gateway's Lambda proxy integration, which adds two limits of its own:

- **the integration timeout**: 29 s by default (REST APIs; regional and private ones may raise it with a
  quota increase). Past it, API Gateway answers 504 ``{"message": "Endpoint request timed out"}`` while the
  function keeps running to its own end.
- **the 6 MB Lambda payload limit, once encoded**: API Gateway hands the API handler the request as a JSON
  *event* (headers twice, a request context, the body as a JSON string, or base64 for binary types), and the
  handler returns its response as JSON holding the body as a string, both subject to Lambda's synchronous
  6 MB limit. A JSON body is escaped inside them (every ``"`` becomes ``\\"``), so a result of about 4.4 MB
  of short strings already fails.

The emulator cuts routes at the timeout and checks both sizes (:func:`check_event`, :func:`check_response`);
the Chalice adapter checks its run route's response the same way, so that locally and deployed the caller
gets one clear 500 ``Function.ResponseSizeTooLarge`` instead of API Gateway's bare 502.

Standard library only: this module goes into Lambda packages.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._errors import LambdapoolError, PayloadTooLarge, ResponseSizeTooLarge
from ._limits import SYNC_PAYLOAD_LIMIT_BYTES, SYNC_RESPONSE_LIMIT_BYTES

__all__ = [
    "CHALICE_BINARY_TYPES",
    "GatewayTimeout",
    "check_event",
    "check_response",
    "encoded_event_size",
    "encoded_response_size",
]

#: The content types Chalice declares binary by default (``app.api.binary_types``): their bodies travel base64.
CHALICE_BINARY_TYPES = (
    "application/octet-stream",
    "application/x-tar",
    "application/zip",
    "audio/basic",
    "audio/ogg",
    "audio/mp4",
    "audio/mpeg",
    "audio/wav",
    "audio/webm",
    "image/png",
    "image/jpg",
    "image/jpeg",
    "image/gif",
    "video/ogg",
    "video/mpeg",
    "video/webm",
)
#: The Lambda Python runtime writes a handler's result with ``json.dumps`` defaults, escaping non-ASCII
#: characters up to Python 3.11 and writing them as UTF-8 from 3.12 (awslambdaric's marshaller).
_RUNTIME_ENSURE_ASCII = sys.version_info < (3, 12)
#: The most a body's byte can grow when escaped into a JSON string (a control character becomes ``\\u00XX``).
_MAX_ESCAPE_GROWTH = 6
#: More than the fixed parts of an event or a response take (request context, status, separators).
_FIXED_PARTS_BOUND = 4096
#: A request context as API Gateway sends it, with values of their deployed lengths (ids, dates, the API's
#: address): it counts in the event's size.
_REQUEST_CONTEXT = {
    "resourceId": "a1b2c3",
    "extendedRequestId": "AbCdEfGhIjKlMnO=",
    "requestTime": "22/Nov/2026:13:00:00 +0000",
    "protocol": "HTTP/1.1",
    "accountId": "123456789012",
    "requestTimeEpoch": 1795352400000,
    "requestId": "00000000-0000-0000-0000-000000000000",
    "identity": {
        "cognitoIdentityPoolId": None,
        "accountId": None,
        "cognitoIdentityId": None,
        "caller": None,
        "sourceIp": "127.0.0.1",
        "principalOrgId": None,
        "accessKey": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": None,
        "userAgent": "",
        "user": None,
    },
    "domainName": "abcdefghij.execute-api.us-east-1.amazonaws.com",
    "domainPrefix": "abcdefghij",
    "apiId": "abcdefghij",
}


class Headers(Protocol):
    """A request's headers: a mapping, or Werkzeug's ``Headers``."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class GatewayTimeout(LambdapoolError):
    """API Gateway gave up on a route after its integration timeout: 504 with API Gateway's own body (not the
    error envelope). The call itself goes on to its end, as the function does on Lambda."""

    status = 504
    error_type = "GatewayTimeout"

    @classmethod
    def after(cls, limit_s: float) -> GatewayTimeout:
        return cls(
            "Endpoint request timed out",
            f"API Gateway ends every route after {limit_s:g} s, whatever the function's timeout_s: "
            "long work belongs behind /submit",
        )

    def to_body(self) -> dict[str, str]:  # API Gateway's body has one key
        return {"message": self.message}


def is_binary(content_type: str | None, binary_types: Iterable[str] = CHALICE_BINARY_TYPES) -> bool:
    """Whether API Gateway passes a body of ``content_type`` base64-encoded (it is one of ``binary_types``,
    parameters such as ``charset`` ignored; ``*/*`` and ``type/*`` patterns match)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    for pattern in binary_types:
        pattern = pattern.lower()
        if pattern in (media, "*/*") or (pattern.endswith("/*") and media.startswith(pattern[:-1])):
            return True
    return False


def _chalice_encodes(content_type: str, binary_types: Iterable[str]) -> bool:
    """Whether Chalice base64-encodes a response of ``content_type`` (``Response.to_dict``: ``*/*`` on either
    side, or one of the header's parts among ``binary_types``; a JSON body too, if its type is listed)."""
    content_type = content_type.lower()
    types = {pattern.lower() for pattern in binary_types}
    parts = {part.strip() for part in re.split("[,;]", content_type)}
    return "*/*" in content_type or "*/*" in types or bool(types & parts)


def _body_text(body: bytes | str, binary: bool) -> str:
    if binary:
        raw = body.encode() if isinstance(body, str) else body
        return base64.b64encode(raw).decode("ascii")
    return body if isinstance(body, str) else body.decode("utf-8", "replace")


def encoded_event_size(
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
    *,
    query: Mapping[str, list[str]] | str | None = None,
    path_parameters: Mapping[str, str] | None = None,
    resource: str | None = None,
    stage: str = "api",
    binary_types: Iterable[str] = CHALICE_BINARY_TYPES,
) -> int:
    """The size in bytes of the proxy event API Gateway would send the API handler for this request: the
    event's JSON, headers as sent (once single-valued, once as lists), query string parameters, the request
    context and the body as a JSON string (base64 for a binary content type). ``query`` is the parsed query
    string, or the query string as sent."""
    if isinstance(query, str):
        query = urllib.parse.parse_qs(query, keep_blank_values=True)
    pairs = list(headers.items())
    content_type = next((value for name, value in pairs if name.lower() == "content-type"), None)
    binary = is_binary(content_type, binary_types)
    single_query = {name: values[-1] for name, values in (query or {}).items()} or None
    event = {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": dict(pairs) or None,
        "multiValueHeaders": {name: [value] for name, value in pairs} or None,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": dict(query) if query else None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            **_REQUEST_CONTEXT,
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
        },
        "body": "",
        "isBase64Encoded": binary,
    }
    fixed = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
    if not body:
        return fixed + len("null") - len('""')
    return fixed - len('""') + len(json.dumps(_body_text(body, binary), ensure_ascii=False).encode())


def encoded_response_size(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    binary_types: Iterable[str] = CHALICE_BINARY_TYPES,
) -> int:
    """The size in bytes of the response a Chalice API handler returns to API Gateway for this answer, as the
    Lambda Python runtime writes it (``Response.to_dict``'s shape, base64 for a binary content type)."""
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    binary = _chalice_encodes(content_type, binary_types)
    response: dict[str, Any] = {"headers": dict(headers), "multiValueHeaders": {}, "statusCode": status, "body": ""}
    if binary:
        response["isBase64Encoded"] = True
    fixed = len(json.dumps(response, ensure_ascii=_RUNTIME_ENSURE_ASCII).encode())
    text = json.dumps(_body_text(body, binary), ensure_ascii=_RUNTIME_ENSURE_ASCII)
    return fixed - len('""') + len(text.encode())


def _may_exceed(body_size: int, limit_bytes: int) -> bool:
    """Whether a body of ``body_size`` bytes could make an event or a response over ``limit_bytes`` (if not,
    nothing needs encoding: the common case costs nothing)."""
    return body_size * _MAX_ESCAPE_GROWTH + _FIXED_PARTS_BOUND > limit_bytes


def check_event(
    method: str,
    path: str,
    headers: Headers,
    body: bytes,
    *,
    limit_bytes: int = SYNC_PAYLOAD_LIMIT_BYTES,
    **route: Any,
) -> None:
    """Raise :class:`PayloadTooLarge` if this request's proxy event (:func:`encoded_event_size`; ``route``
    takes its keyword arguments) is over Lambda's limit: the API handler would never be invoked."""
    header_bytes = sum(len(name) + len(value) for name, value in headers.items()) * 2
    query = route.get("query")
    if isinstance(query, str):
        query_bytes = len(query) * 2
    else:
        query_bytes = sum(len(name) + sum(map(len, values)) for name, values in (query or {}).items()) * 2
    if not _may_exceed(len(body) + header_bytes + query_bytes, limit_bytes):
        return
    size = encoded_event_size(method, path, headers, body, **route)
    if size > limit_bytes:
        raise PayloadTooLarge.encoded_event(size, len(body), limit_bytes)


def check_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    limit_bytes: int = SYNC_RESPONSE_LIMIT_BYTES,
    binary_types: Iterable[str] = CHALICE_BINARY_TYPES,
) -> None:
    """Raise :class:`ResponseSizeTooLarge` if the API handler's response for this answer
    (:func:`encoded_response_size`) is over Lambda's limit."""
    units = len(body) * 2 if isinstance(body, str) else len(body)  # a character may escape to 12 bytes
    if not _may_exceed(units, limit_bytes):
        return
    size = encoded_response_size(status, headers, body, binary_types)
    if size > limit_bytes:
        raise ResponseSizeTooLarge.encoded_response(size, len(body), limit_bytes)
