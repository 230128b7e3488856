"""Framing for the emulator's sockets to the fork server and to pipelines.

A frame is two big-endian 32-bit lengths, a JSON header and an opaque payload (request or result JSON
bytes, passed through without decoding).
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
from typing import Any

from ..._errors import ChannelClosed

_LENGTHS = struct.Struct("!II")
#: Upper bound on one frame, well above the 6 MB body limit, so a corrupt length cannot exhaust memory.
MAX_FRAME_BYTES = 64 * 2**20
PREFIX_SIZE = _LENGTHS.size


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_LENGTHS.pack(len(head), len(payload)), head, payload))


def decode_prefix(prefix: bytes) -> tuple[int, int]:
    """The header and payload sizes a frame's first :data:`PREFIX_SIZE` bytes announce."""
    head_size, payload_size = _LENGTHS.unpack(prefix)
    if head_size + payload_size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {head_size + payload_size} bytes is over the limit")
    return int(head_size), int(payload_size)


def send_frame(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    """Send one frame; raises ``OSError`` if the peer is gone."""
    sock.sendall(encode_frame(header, payload))


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes; raises :class:`ChannelClosed` if the stream ends first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise ChannelClosed("the peer closed the connection")
        received += count
    return bytes(buffer)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    """Receive one frame with exact reads (for sockets whose stream other code also reads).

    Raises :class:`ChannelClosed` at end of stream, ``TimeoutError`` if the socket's timeout passes first,
    ``ValueError`` for a corrupt frame."""
    head_size, payload_size = decode_prefix(recv_exactly(sock, PREFIX_SIZE))
    return finish_frame(sock, head_size, payload_size)


class FrameReader:
    """Reads frames from a socket it owns, in as few ``recv`` calls as possible.

    A small frame usually arrives whole in one ``recv``; bytes past the end of a frame are kept for the
    next one. Raises like :func:`recv_frame`.
    """

    CHUNK_BYTES = 64 * 1024  # under malloc's mmap threshold: no mmap/munmap per read

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self.sock.recv(max(self.CHUNK_BYTES, size - len(self._buffer)))
            if not chunk:
                raise ChannelClosed("the peer closed the connection")
            self._buffer += chunk

    def read_within(self, wait_s: float) -> tuple[dict[str, Any], bytes] | None:
        """The next frame if its first bytes come within ``wait_s`` (``None`` otherwise, and nothing is read);
        then the rest of it, however long it takes. Raises like :meth:`read`.

        The kernel bounds the first read (``SO_RCVTIMEO``): one system call waits, where a ``poll`` and then
        a ``recv`` were two, and Python lets another thread take the GIL around each."""
        if not self._buffer and not self._first_bytes_within(wait_s):
            return None
        return self.read()

    def _first_bytes_within(self, wait_s: float) -> bool:
        microseconds = max(1, math.ceil(wait_s * 1_000_000))  # 0 would mean no limit
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(microseconds))
        except (OSError, struct.error):  # a platform without it: wait with poll
            return _readable(self.sock, wait_s)
        try:
            self._fill(1)  # one recv: the buffer is empty
        except BlockingIOError:  # nothing came in time
            return False
        finally:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0))
        return True

    def read(self) -> tuple[dict[str, Any], bytes]:
        self._fill(PREFIX_SIZE)
        head_size, payload_size = decode_prefix(bytes(self._buffer[:PREFIX_SIZE]))
        end = PREFIX_SIZE + head_size + payload_size
        self._fill(end)
        header = json.loads(self._buffer[PREFIX_SIZE : PREFIX_SIZE + head_size])
        payload = bytes(self._buffer[PREFIX_SIZE + head_size : end])
        del self._buffer[:end]
        if not isinstance(header, dict):
            raise ValueError("frame header is not a JSON object")
        return header, payload


def _timeval(microseconds: int) -> bytes:
    """A ``struct timeval`` (``SO_RCVTIMEO``'s value)."""
    return struct.pack("@ll", microseconds // 1_000_000, microseconds % 1_000_000)


def _readable(sock: socket.socket, wait_s: float) -> bool:
    """Whether ``sock`` has data (or its end, or a shutdown) within ``wait_s``."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(wait_s * 1000))))


def finish_frame(sock: socket.socket, head_size: int, payload_size: int) -> tuple[dict[str, Any], bytes]:
    """Read the rest of a frame whose prefix was already read."""
    header = json.loads(recv_exactly(sock, head_size))
    payload = recv_exactly(sock, payload_size) if payload_size else b""
    if not isinstance(header, dict):
        raise ValueError("frame header is not a JSON object")
    return header, payload
