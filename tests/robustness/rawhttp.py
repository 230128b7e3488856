"""HTTP/1.x by hand: write exact bytes to a socket, read until the server closes, parse what came back.

No HTTP library sits between the tests and the emulator, so malformed framing reaches the server as written.
Every read has a deadline: a server that never answers is a :class:`NoAnswerInTime` failure, not a stuck suite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

#: How long one exchange may take, from connect to the server closing the connection (every legitimate
#: answer in these tests comes in well under a second).
EXCHANGE_TIMEOUT_S = 10.0


class NoAnswerInTime(AssertionError):
    """The server neither answered nor closed the connection within the deadline."""


@dataclasses.dataclass
class Answer:
    """One HTTP response. ``status`` is ``None`` for an answer without a status line (HTTP/0.9 style)."""

    status: int | None
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or ``None``."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        """The body as JSON (integers as :class:`decimal.Decimal`, so no digit limit applies; deep nesting
        allowed). Raises ``ValueError`` if it is not JSON."""
        return loads(self.body)


@dataclasses.dataclass
class Exchange:
    """Everything one connection gave back: the bytes, the answers parsed from them, and how it ended."""

    raw: bytes
    answers: list[Answer]
    unparsed: bytes  # bytes after the last answer that could be parsed (should be empty)
    reset: bool  # the server reset the connection (ECONNRESET) rather than closing it
    send_failed: bool  # the server stopped reading before we had sent everything
    seconds: float

    @property
    def final(self) -> Answer | None:
        """The first non-interim answer (``100 Continue`` and other 1xx are skipped)."""
        for answer in self.answers:
            if answer.status is None or answer.status >= 200:
                return answer
        return None


def loads(data: bytes | str) -> Any:
    """JSON as the emulator should read it, but without CPython's digit limit or recursion limit biting the
    test itself: integers become :class:`decimal.Decimal`."""
    with deep_recursion():
        return json.loads(data, parse_int=decimal.Decimal)


@contextlib.contextmanager
def deep_recursion(limit: int = 20_000) -> Iterator[None]:
    """Let the C JSON decoder and ``==`` walk a few thousand levels of nesting, then restore the limit."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def exchange(
    port: int,
    data: bytes,
    *,
    half_close: bool = True,
    head_request: bool = False,
    timeout_s: float = EXCHANGE_TIMEOUT_S,
    host: str = "127.0.0.1",
) -> Exchange:
    """Connect, send ``data``, half-close (unless told not to) and read until the server closes.

    Raises :class:`NoAnswerInTime` if the connection is still open after ``timeout_s``.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    received = bytearray()
    reset = send_failed = False
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        try:
            connection.sendall(data)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered (or gave up) before reading everything: read what it said
            send_failed = True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswerInTime(f"the connection was still open after {timeout_s} s; received {show(received)}")
            connection.settimeout(remaining)
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue  # the deadline check above fails it
            except ConnectionResetError:
                reset = True
                break
            if not chunk:
                break
            received += chunk
    answers, unparsed = parse_answers(bytes(received), head_request=head_request)
    return Exchange(bytes(received), answers, unparsed, reset, send_failed, time.monotonic() - started)


def send_and_abandon(port: int, data: bytes, *, abort: bool = False, host: str = "127.0.0.1") -> None:
    """Send ``data`` and close at once without reading: a client that gives up (``abort``: with a reset)."""
    connection = socket.create_connection((host, port), timeout=5)
    try:
        if abort:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            connection.sendall(data)
    finally:
        connection.close()


_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")


def parse_answers(raw: bytes, *, head_request: bool = False) -> tuple[list[Answer], bytes]:
    """The responses in ``raw`` (a server may send interim 1xx answers, or several answers on a kept-alive
    connection), and the bytes left over that are not a complete response."""
    answers: list[Answer] = []
    rest = raw
    while rest:
        status_line = _STATUS_LINE.match(rest)
        if status_line is None:
            if not answers:  # HTTP/0.9 style: no status line, no headers, the body until the close
                answers.append(Answer(None, "", [], rest, rest))
                return answers, b""
            return answers, rest
        head_end = _head_end(rest, status_line.end())
        if head_end is None:
            return answers, rest
        headers = _parse_headers(rest[status_line.end() : head_end[0]])
        status = int(status_line.group(3))
        reason = (status_line.group(4) or b"").decode("latin-1")
        body_start = head_end[1]
        answer = Answer(status, reason, headers, b"", b"")
        lengths = [value for key, value in headers if key.lower() == "content-length"]
        chunked = any("chunked" in value.lower() for key, value in headers if key.lower() == "transfer-encoding")
        bodiless = status < 200 or status in (204, 304)
        if bodiless or (head_request and not _is_announced_body(rest, body_start, lengths)):
            body_end = body_start
        elif chunked:
            decoded = _dechunk(rest, body_start)
            if decoded is None:
                return answers, rest
            answer.body, body_end = decoded
        elif lengths:
            try:
                body_end = body_start + int(lengths[0])
            except ValueError:
                return answers, rest
            if body_end > len(rest):
                return answers, rest
        else:
            body_end = len(rest)
        if not chunked:
            answer.body = rest[body_start:body_end]
        answer.raw = rest[:body_end]
        answers.append(answer)
        rest = rest[body_end:]
    return answers, b""


def _is_announced_body(data: bytes, start: int, lengths: list[str]) -> bool:
    """Whether the bytes after an answer to HEAD are exactly the body its Content-Length announced (a server
    that could not read the request line as HEAD answers with a body): then they belong to that answer."""
    try:
        return bool(lengths) and len(data) - start == int(lengths[0]) > 0 and not data[start:].startswith(b"HTTP/")
    except ValueError:
        return False


def _head_end(data: bytes, start: int) -> tuple[int, int] | None:
    """Where the headers end and the body begins (CRLF CRLF, tolerating bare LF)."""
    if data[start : start + 2] == b"\r\n":
        return start, start + 2
    if data[start : start + 1] == b"\n":
        return start, start + 1
    found = re.compile(rb"\r?\n\r?\n").search(data, start)
    return None if found is None else (found.start(), found.end())


def _parse_headers(block: bytes) -> list[tuple[str, str]]:
    headers = []
    for line in re.split(rb"\r?\n", block):
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    return headers


def _dechunk(data: bytes, position: int) -> tuple[bytes, int] | None:
    body = bytearray()
    while True:
        line_end = data.find(b"\n", position)
        if line_end < 0:
            return None
        try:
            size = int(data[position:line_end].split(b";")[0].strip(), 16)
        except ValueError:
            return None
        position = line_end + 1
        if size == 0:
            while True:  # trailers, then the empty line
                line_end = data.find(b"\n", position)
                if line_end < 0:
                    return bytes(body), len(data)
                line, position = data[position:line_end], line_end + 1
                if not line.strip():
                    return bytes(body), position
        body += data[position : position + size]
        position += size
        if data[position : position + 2] == b"\r\n":
            position += 2
        elif data[position : position + 1] == b"\n":
            position += 1


def show(data: bytes | bytearray, limit: int = 600) -> str:
    """``data`` as a Python expression a developer can paste, with long runs written as repetitions
    (``b'[' * 1500``) and the middle of anything still too long elided."""
    data = bytes(data)
    parts: list[str] = []
    position = 0
    for run in _RUN.finditer(data):
        pattern = run.group(1)
        count = len(run.group(0)) // len(pattern)
        if count * len(pattern) < 32:
            continue
        if run.start() > position:
            parts.append(repr(data[position : run.start()]))
        parts.append(f"{pattern!r} * {count}")
        position = run.start() + count * len(pattern)
    if position < len(data):
        parts.append(repr(data[position:]))
    text = " + ".join(parts) if parts else "b''"
    if len(text) > limit:
        text = f"{text[: limit * 2 // 3]} ... {text[-limit // 3 :]}  ({len(data)} bytes)"
    return text


#: A pattern of 1-8 bytes repeated at least 16 times.
_RUN = re.compile(rb"(.{1,8}?)\1{15,}", re.DOTALL)
