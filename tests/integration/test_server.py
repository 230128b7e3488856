"""The HTTP server against hostile and careless clients, over real sockets: framing, protocol errors, slow
clients, connection limits and bursts. After each, the emulator still serves everyone else."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable

import pytest

from lambdapool.emulator.http._server import ConnectionLimits

from .conftest import APPS, Client

pytestmark = pytest.mark.integration

RUN = b"POST /public/api/v1/b/echo/run HTTP/1.1\r\nHost: x\r\n"


def address(client: Client) -> tuple[str, int]:
    host, port = client.url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(client: Client, raw: bytes, *, close_after_send: bool = True, timeout_s: float = 30) -> bytes:
    """Send ``raw`` on a new connection (then half-close it) and read until the server closes."""
    with socket.create_connection(address(client), timeout=timeout_s) as connection:
        connection.sendall(raw)
        if close_after_send:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def json_error(answer: bytes, status: int, error_type: str) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"Content-Type: application/json" in head
    error = json.loads(body)
    assert error["errorType"] == error_type and error["message"] and error["detailedMessage"]
    assert set(error) == {"errorType", "message", "detailedMessage"}
    return error


def calls(client: Client) -> int:
    return int(client.endpoint_status("b", "echo")["counters"]["calls"])


def still_serves(client: Client) -> None:
    answer = client.run("b", "echo", {"x": 1})
    assert answer.status_code == 200 and answer.json()["response"]["x"] == 1


def test_a_chunked_body_cut_off_inside_its_first_chunk_is_a_bad_request(behaviours: Client) -> None:
    # 90 bytes that used to kill the emulator with SIGSEGV (Werkzeug's de-chunker over-reported its reads).
    raw = RUN + b"Transfer-Encoding: chunked\r\n\r\n1000000\r\n{}"
    json_error(exchange(behaviours, raw), 400, "BadRequest")
    still_serves(behaviours)


@pytest.mark.parametrize(
    "framing",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}}\r\n0\r\n\r\n", b"2\r\n{}\r\n"],
    ids=["not-hex", "longer-than-its-size", "no-last-chunk"],
)
def test_malformed_chunked_framing_is_a_bad_request_and_runs_nothing(behaviours: Client, framing: bytes) -> None:
    before = calls(behaviours)
    json_error(exchange(behaviours, RUN + b"Transfer-Encoding: chunked\r\n\r\n" + framing), 400, "BadRequest")
    assert calls(behaviours) == before
    still_serves(behaviours)


def test_a_valid_chunked_body_is_read_whole(behaviours: Client) -> None:
    answer = behaviours.run("b", "echo", data=(part for part in (b'{"x": ', b"[1, 2", b", 3]}")))
    assert answer.status_code == 200 and answer.json()["response"]["x"] == [1, 2, 3]


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: -1\r\n",
        b"Content-Length: abc\r\n",
        b"Content-Length: 2\r\nContent-Length: 3\r\n",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length : 2\r\n",
        b"NoColon\r\nContent-Length: 2\r\n",
        b"Content-Length: 2\r\n folded\r\n",
        b"Transfer-Encoding: gzip\r\nContent-Length: 2\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",
    ],
    ids=[
        "negative",
        "not-a-number",
        "twice",
        "beside-chunked",
        "space-before-colon",
        "line-without-colon",
        "folded-line",
        "unknown-transfer-encoding",
        "chunked-then-more",
    ],
)
def test_bad_framing_headers_are_a_bad_request_and_run_nothing(behaviours: Client, headers: bytes) -> None:
    before = calls(behaviours)
    json_error(exchange(behaviours, RUN + headers + b"\r\n{}"), 400, "BadRequest")
    assert calls(behaviours) == before


@pytest.mark.parametrize(
    ("raw", "status", "error_type"),
    [
        (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 400, "BadRequest"),
        (
            b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n",
            400,
            "BadRequest",
        ),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400, "BadRequest"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-Long: " + b"y" * 70_000 + b"\r\n\r\n", 400, "BadRequest"),
    ],
    ids=["bad-request-line", "uri-too-long", "too-many-headers", "http-2", "header-line-too-long"],
)
def test_protocol_errors_are_json_error_bodies(behaviours: Client, raw: bytes, status: int, error_type: str) -> None:
    json_error(exchange(behaviours, raw), status, error_type)
    still_serves(behaviours)


def test_a_request_whose_headers_never_end_is_never_executed(behaviours: Client) -> None:
    before = calls(behaviours)
    # The client gives up in the middle of its headers: nothing may run, nothing is answered.
    assert exchange(behaviours, RUN + b"Content-Length: 2\r\nX-Half") == b""
    assert exchange(behaviours, RUN + b"Content-Length: 2\r\n") == b""
    assert calls(behaviours) == before
    still_serves(behaviours)


@pytest.fixture
def strict(start_emulator: Callable[..., Client]) -> Client:
    """An emulator with short time limits and four connections at most."""
    limits = ConnectionLimits(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5, max_connections=4)
    return start_emulator(APPS / "behaviours", connection_limits=limits)


def test_a_client_too_slow_with_its_headers_gets_a_408_and_nothing_runs(strict: Client) -> None:
    before = calls(strict)
    answer = exchange(strict, RUN + b"Content-Length: 2\r\n", close_after_send=False)  # and then nothing
    assert "did not arrive in time" in json_error(answer, 400, "BadRequest")["message"]
    assert calls(strict) == before


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(strict: Client) -> None:
    assert exchange(strict, b"", close_after_send=False) == b""


def test_a_body_slower_than_its_limit_is_cut_off_with_a_bad_request(strict: Client) -> None:
    json_error(exchange(strict, RUN + b"Content-Length: 10\r\n\r\n{}", close_after_send=False), 400, "BadRequest")


def test_past_max_connections_new_connections_get_503_overloaded_at_once(strict: Client) -> None:
    idle = [socket.create_connection(address(strict), timeout=30) for _ in range(4)]
    try:
        for connection in idle:  # each holds a connection thread: make sure the server took them all
            connection.sendall(b"GET /metrics HTTP/1.1\r\n")
        answer = b""

        def rejected() -> bool:
            nonlocal answer
            answer = exchange(strict, b"GET /__lambdapool__/status HTTP/1.1\r\n\r\n")
            return answer.startswith(b"HTTP/1.1 503")

        from .conftest import wait_until

        wait_until(rejected)
        error = json_error(answer, 503, "Overloaded")
        assert "4 connections" in error["message"]
        assert b"Retry-After: 1" in answer
    finally:
        for connection in idle:
            connection.close()
    from .conftest import wait_until

    wait_until(lambda: exchange(strict, RUN + b"Content-Length: 2\r\n\r\n{}").startswith(b"HTTP/1.1 200"))


def test_a_burst_of_connections_is_answered_not_reset(start_emulator: Callable[..., Client]) -> None:
    client = start_emulator(APPS / "behaviours", connection_limits=ConnectionLimits(max_connections=32))
    answers: list[bytes] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    go = threading.Event()

    def one() -> None:
        try:
            go.wait(30)
            answer = exchange(client, RUN + b'Content-Length: 8\r\n\r\n{"x": 1}')
            with lock:
                answers.append(answer)
        except BaseException as exc:  # a reset or refused connection is what this test is about
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(300)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(60)
    assert failures == []
    statuses = {answer.split(b" ", 2)[1] for answer in answers}
    assert len(answers) == 300 and statuses <= {b"200", b"429", b"503"}, statuses
    assert b"200" in statuses
