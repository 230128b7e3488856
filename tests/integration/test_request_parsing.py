"""The server reads a request line and headers as the standard library's HTTP server does (the WSGI environ
is the same as Werkzeug's own server makes of the same bytes), without the email parser it runs per
request; and it answers ``Expect: 100-continue`` once."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from lambdapool.emulator.http._server import EmulatorServer

pytestmark = pytest.mark.integration

#: What the request line and headers decide in the environ.
FROM_THE_REQUEST = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "SERVER_PROTOCOL", "CONTENT_TYPE")


def echo_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = {key: value for key, value in environ.items() if key in FROM_THE_REQUEST or key.startswith("HTTP_")}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, tuple[str, int]]]:
    """Ours and Werkzeug's stock threaded server, the same WSGI app behind each, on free ports."""
    ours = EmulatorServer("127.0.0.1", 0, echo_environ)
    stock = make_server("127.0.0.1", 0, echo_environ, threaded=True)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (ours, stock)]
    for thread in threads:
        thread.start()
    try:
        yield {"ours": ("127.0.0.1", ours.server_port), "stock": ("127.0.0.1", stock.server_port)}
    finally:
        for server in (ours, stock):
            server.shutdown()
            server.server_close()
        ours.close_connections()
        for thread in threads:
            thread.join(10)


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(raw)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def environ_of(address: tuple[str, int], raw: bytes) -> dict[str, str]:
    answer = exchange(address, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    parsed: dict[str, str] = json.loads(body)
    return parsed


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^`|~", min_size=1)
NAMES = TOKEN.filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding", "connection", "expect", "host")
)
#: Visible latin-1 text, spaces and tabs (none of CR, LF or other controls), leading and trailing blanks too.
VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
VALUES = st.text(alphabet=VISIBLE | st.just("\t"))
PATHS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%!$&'()*+,;=:@?", max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=PATHS,
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=8),
    separator=st.sampled_from([b"\r\n", b"\n"]),
)
def test_the_environ_is_what_werkzeugs_own_server_makes_of_the_same_request(
    servers: dict[str, tuple[str, int]], method: str, path: str, headers: list[tuple[str, str]], separator: bytes
) -> None:
    lines = [f"{method} /{path} HTTP/1.1".encode()]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers]
    lines += [b"Host: example", b"Content-Length: 0", b"Connection: close", b"", b""]
    raw = separator.join(lines)
    assert environ_of(servers["ours"], raw) == environ_of(servers["stock"], raw)


def test_expect_100_continue_gets_one_interim_answer_then_the_answer(servers: dict[str, tuple[str, int]]) -> None:
    with socket.create_connection(servers["ours"], timeout=30) as connection:
        connection.sendall(
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += connection.recv(1)  # one byte at a time: nothing past the interim answer is read
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"{}")
        rest = b""
        while chunk := connection.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:100]


def test_http_1_0_with_expect_gets_no_interim_answer(servers: dict[str, tuple[str, int]]) -> None:
    answer = exchange(servers["ours"], b"POST /x HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:100]  # the server's version, no 100 before it
