"""A pipeline's socket, used by a call's thread while another ends the pipeline.

The pipeline process here is a real child (``sleep``) standing for a forked pipeline: the handle's kill
signals it and the test reaps it. Nothing answers on the socket's other end, as with a hung function.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from lambdapool._errors import ChannelClosed
from lambdapool.emulator.pool._pipeline import KillReason, Pipeline


@pytest.fixture
def pipeline() -> Iterator[tuple[Pipeline, socket.socket]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ours, theirs = socket.socketpair()
    handle = Pipeline("svc-ep-1", process.pid, ours)
    try:
        yield handle, theirs
    finally:
        handle.kill(KillReason.SHUTDOWN)
        theirs.close()
        process.kill()
        process.wait(30)


def test_a_kill_ends_a_bounded_wait_at_once(pipeline: tuple[Pipeline, socket.socket]) -> None:
    handle, _ = pipeline
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(handle.receive(600.0))
        except (ChannelClosed, OSError) as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    handle.kill(KillReason.OUT_OF_MEMORY)
    waiter.join(30)  # far below the wait's bound of 600 s: only the kill can have ended it

    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], (ChannelClosed, OSError)), outcome


def test_the_descriptor_outlives_a_kill_while_a_thread_uses_it(pipeline: tuple[Pipeline, socket.socket]) -> None:
    """Closed under a thread about to poll or read it, the descriptor's number could be reused at once by
    another connection, which the call would then wait on (a 29 s stall was seen) or read from. A kill only
    shuts the socket down; the last thread out closes it."""
    handle, _ = pipeline
    sock = handle._sock
    handle._enter_socket()  # a call's thread, between its checks and its poll
    handle.kill(KillReason.OUT_OF_MEMORY)

    assert sock.fileno() >= 0, "closed under the thread using it"
    assert sock.recv(1) == b"", "not shut down: the thread would not wake"
    handle._leave_socket()
    assert sock.fileno() == -1, "not closed once the last thread left"


def test_a_killed_pipeline_refuses_calls_at_once(pipeline: tuple[Pipeline, socket.socket]) -> None:
    handle, _ = pipeline
    handle.kill(KillReason.TIMEOUT)

    assert handle._sock.fileno() == -1
    with pytest.raises(ChannelClosed):
        handle.receive(600.0)
    with pytest.raises(ChannelClosed):
        handle.send({"op": "call"}, b"{}", deadline=0.0)
