"""HTTP/1.1 keep-alive over real sockets: several requests on one connection, pipelined or one after the
other; a body a view did not read drained (or the connection closed when it is too big); half-closed
connections; HTTP/1.0; ``Connection: close``; the idle timeout of a kept-alive connection."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from lambdapool.emulator.http._server import KEEP_ALIVE_DRAIN_BYTES, MAX_SPARE_WORKERS, ConnectionLimits

from ..robustness.rawhttp import Answer, parse_answers
from .conftest import APPS, Client
from .test_server import address, exchange

pytestmark = pytest.mark.integration


def run(x: object, version: str = "HTTP/1.1", extra: bytes = b"") -> bytes:
    body = json.dumps({"x": x}).encode()
    head = f"POST /public/api/v1/b/echo/run {version}\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head.encode() + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def read_answers(connection: socket.socket, count: int, timeout_s: float = 30.0) -> list[Answer]:
    """Read from a connection kept open until ``count`` whole answers came."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while True:
        answers, _rest = parse_answers(received)
        if len(answers) >= count:
            return answers
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection after {len(answers)} answers: {received[-300:]!r}"
        received += chunk


def echoed(answer: Answer) -> object:
    assert answer.status == 200, answer.raw[:300]
    return json.loads(answer.body)["response"]["x"]


def test_requests_one_after_the_other_share_a_connection(behaviours: Client) -> None:
    with socket.create_connection(address(behaviours), timeout=30) as connection:
        for number in range(5):
            connection.sendall(run(number))
            (answer,) = read_answers(connection, 1)
            assert echoed(answer) == number
            assert answer.header("Connection") is None  # HTTP/1.1: kept alive without saying so
            assert answer.header("Content-Length") == str(len(answer.body))


def test_pipelined_requests_are_answered_in_order(behaviours: Client) -> None:
    status = b"GET /__lambdapool__/status HTTP/1.1\r\nHost: x\r\n\r\n"
    answers, rest = parse_answers(exchange(behaviours, run(1) + status + run("two") + run(3)))
    assert rest == b""
    assert [answer.status for answer in answers] == [200, 200, 200, 200]
    assert [echoed(answers[0]), echoed(answers[2]), echoed(answers[3])] == [1, "two", 3]
    assert "services" in json.loads(answers[1].body)


def test_a_body_the_view_did_not_read_is_drained_not_taken_for_the_next_request(behaviours: Client) -> None:
    # No key: the run route answers 401 before it reads the body, which looks like a request line.
    body = b"GET /__lambdapool__/status HTTP/1.1\r\n\r\n"
    unread = b"POST /public/api/v1/secured/hello/run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    answers, rest = parse_answers(exchange(behaviours, unread + body + run(7)))
    assert [answer.status for answer in answers] == [401, 200]
    assert echoed(answers[1]) == 7
    assert rest == b""


def test_a_chunked_body_then_the_next_request(behaviours: Client) -> None:
    chunked = (
        b"POST /public/api/v1/b/echo/run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"x"\r\n5\r\n: 42}\r\n0\r\n\r\n'
    )
    answers, _ = parse_answers(exchange(behaviours, chunked + run(8)))
    assert [echoed(answer) for answer in answers] == [42, 8]


def test_an_unread_body_over_the_drain_limit_closes_the_connection(behaviours: Client) -> None:
    size = KEEP_ALIVE_DRAIN_BYTES + 1
    head = b"POST /public/api/v1/secured/hello/run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
    with socket.create_connection(address(behaviours), timeout=30) as connection:
        connection.sendall(head)  # the body never comes: the answer does not wait for it
        (answer,) = read_answers(connection, 1)
        assert answer.status == 401
        assert answer.header("Connection") == "close"
        connection.settimeout(30)
        assert connection.recv(65536) == b""  # closed, not waiting for the rest of the body


def test_connection_close_and_http_1_0(behaviours: Client) -> None:
    answers, _ = parse_answers(exchange(behaviours, run(1, extra=b"Connection: close\r\n") + run(2)))
    assert len(answers) == 1 and answers[0].header("Connection") == "close"  # the second is never read

    answers, _ = parse_answers(exchange(behaviours, run(1, "HTTP/1.0") + run(2, "HTTP/1.0")))
    assert len(answers) == 1 and answers[0].header("Connection") == "close"  # HTTP/1.0 closes by default

    kept = run(1, "HTTP/1.0", b"Connection: keep-alive\r\n") + run(2, "HTTP/1.0", b"Connection: keep-alive\r\n")
    answers, _ = parse_answers(exchange(behaviours, kept))
    assert [echoed(answer) for answer in answers] == [1, 2]
    assert answers[0].header("Connection") == "keep-alive"


def test_an_answer_to_head_has_no_body_and_the_next_request_follows(behaviours: Client) -> None:
    head = b"HEAD /__lambdapool__/status HTTP/1.1\r\nHost: x\r\n\r\n"
    get = b"GET /__lambdapool__/dashboard/index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(behaviours, head + get)
    after_head = raw[raw.index(b"\r\n\r\n") + 4 :]
    assert after_head.startswith(b"HTTP/1.1 200")  # straight after the HEAD answer's headers
    answers, rest = parse_answers(after_head)
    assert answers[0].body.startswith(b"<!doctype html>") and rest == b""


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(start_emulator: Callable[..., Client]) -> None:
    strict = start_emulator(APPS / "behaviours", connection_limits=ConnectionLimits(idle_timeout_s=0.5))
    with socket.create_connection(address(strict), timeout=30) as connection:
        connection.sendall(run(1))
        (answer,) = read_answers(connection, 1)
        assert echoed(answer) == 1
        connection.settimeout(30)
        assert connection.recv(65536) == b""  # the server ended the idle connection


def workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "lambdapool-http-worker"]


def test_connections_reuse_a_few_worker_threads_which_end_with_the_server(
    start_emulator: Callable[..., Client],
) -> None:
    others = set(workers())  # of servers other tests may still run
    client = start_emulator(APPS / "behaviours")
    for number in range(30):  # one connection each
        answers, _ = parse_answers(exchange(client, run(number, extra=b"Connection: close\r\n")))
        assert echoed(answers[0]) == number
    assert 1 <= len(set(workers()) - others) <= MAX_SPARE_WORKERS
    client.emulator.close()
    assert set(workers()) - others == set()
