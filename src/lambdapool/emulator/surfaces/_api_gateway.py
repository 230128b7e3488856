"""API Gateway in front of the Chalice app's own routes: a request in, a response out, and API Gateway's own
answers when the API handler's invocation fails (504 past the integration timeout; 502 or 500
``{"message": "Internal server error"}`` for a crash, a timeout, memory, a response over 6 MB, a throttle).
"""

from __future__ import annotations

import base64
import json

from werkzeug.wrappers import Request, Response

from ..._errors import LambdapoolError, QueueFull, QueueTimeout
from ..._gateway import GatewayTimeout


def route_request(request: Request, body: bytes) -> bytes:
    """What a pipeline of the API handler is sent for ``request``: its method, path with the query string,
    headers as sent and body (base64: it may be binary), as JSON."""
    path = request.full_path if request.query_string else request.path
    return json.dumps(
        {
            "method": request.method,
            "path": path,
            "headers": dict(request.headers.items()),
            "body": base64.b64encode(body).decode("ascii") if body else None,
        },
        separators=(",", ":"),
    ).encode()


def route_response(result: bytes) -> Response:
    """The HTTP response for what the API handler returned (Chalice's response dict), as ``chalice local``
    writes it: single and multi-valued headers, the body base64-decoded when so marked."""
    answer = json.loads(result)
    headers: list[tuple[str, str]] = []
    for name, value in (answer.get("headers") or {}).items():
        headers.append((name, str(value)))
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers += [(name, str(value)) for value in values]
    body = answer.get("body")
    data = b"" if body is None else base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(answer.get("statusCode", 200)))
    response.headers.clear()
    if not any(name.lower() == "content-type" for name, _ in headers) and data:
        headers.append(("Content-Type", "application/json"))
    for name, value in headers:
        response.headers.add(name, value)
    return response


def gateway_failure(error: LambdapoolError) -> Response:
    """What API Gateway answers when the API handler's invocation fails: 504 past its integration timeout,
    500 when Lambda throttled it or refused its event, 502 when the function failed (crashed, timed out,
    ran out of memory, or returned a response over the limit)."""
    if isinstance(error, GatewayTimeout):
        status, message = 504, "Endpoint request timed out"
    elif isinstance(error, (QueueFull, QueueTimeout)) or error.status == 413:
        status, message = 500, "Internal server error"
    else:
        status, message = 502, "Internal server error"
    body = json.dumps({"message": message}).encode()
    return Response(body, status=status, content_type="application/json")
