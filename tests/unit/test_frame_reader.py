"""``FrameReader.read_within``: a bounded wait for a frame's first bytes, then the whole frame; the socket is
left without a receive timeout afterwards."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from lambdapool._errors import ChannelClosed
from lambdapool.emulator.pipelines._wire import FrameReader, encode_frame


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def receive_timeout_us(sock: socket.socket) -> int:
    seconds, microseconds = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    return int(seconds * 1_000_000 + microseconds)


def test_nothing_within_the_wait_is_none_and_leaves_no_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    reader = FrameReader(ours)
    assert reader.read_within(0.01) is None
    assert receive_timeout_us(ours) == 0


def test_a_frame_there_or_coming_is_read_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = FrameReader(ours)
    theirs.sendall(encode_frame({"op": "result"}, b"42"))
    assert reader.read_within(30) == ({"op": "result"}, b"42")

    frame = encode_frame({"op": "result"}, b"x" * 200_000)
    theirs.sendall(frame[:10])  # the first bytes in time, the rest later: read to its end
    sender = threading.Timer(0.05, lambda: theirs.sendall(frame[10:]))
    sender.start()
    try:
        assert reader.read_within(30) == ({"op": "result"}, b"x" * 200_000)
    finally:
        sender.join()
    assert receive_timeout_us(ours) == 0


def test_the_peer_gone_is_channel_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.shutdown(socket.SHUT_RDWR)
    with pytest.raises(ChannelClosed):
        FrameReader(ours).read_within(30)
