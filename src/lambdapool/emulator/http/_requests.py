"""Reading request bodies within their limit, and answering JSON, for the emulator's WSGI views."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request, Response

from ..._errors import BadRequest, LambdapoolError, PayloadTooLarge

#: Past this an oversized upload is cut off instead of read and discarded.
DRAIN_LIMIT_BYTES = 256 * 2**20


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` (JSON bytes as they are, anything else encoded) as an ``application/json`` response."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(data, status=status, headers=headers, content_type="application/json")


def error_response(error: LambdapoolError) -> Response:
    """The error envelope with the error's status and headers."""
    return json_response(error.to_json(), error.status, error.headers())


def read_body(request: Request, limit: int, *, asynchronous: bool = False) -> bytes:
    """The request body, at most ``limit`` bytes; raises :class:`PayloadTooLarge` beyond it, and
    :class:`BadRequest` for a body shorter than its ``Content-Length``.

    An oversized body is read and discarded (up to a bound) so that the client, still sending, gets the
    413 instead of a reset connection.
    """
    stream = request.stream
    declared = request.content_length
    try:
        if declared is not None and declared > limit:
            _drain(stream, declared)
            raise PayloadTooLarge.over_limit(limit, declared, asynchronous=asynchronous)
        data = stream.read(limit + 1)
        while declared is not None and len(data) < declared:  # a socket read may return part of it
            more = stream.read(declared - len(data))
            if not more:
                raise ClientDisconnected()
            data += more
        if len(data) > limit:
            _drain(stream, None)
            raise PayloadTooLarge.over_limit(limit, declared, asynchronous=asynchronous)
    except (ClientDisconnected, EOFError) as exc:
        raise BadRequest(
            "the request body ended early",
            f"the client sent fewer bytes than its Content-Length ({declared}) announced",
        ) from exc
    return bytes(data)


def _drain(stream: Any, declared: int | None) -> None:
    remaining = min(declared, DRAIN_LIMIT_BYTES) if declared is not None else DRAIN_LIMIT_BYTES
    while remaining > 0:
        chunk = stream.read(min(remaining, 2**20))
        if not chunk:
            return
        remaining -= len(chunk)
