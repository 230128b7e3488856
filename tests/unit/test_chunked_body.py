"""The emulator's strict reader of chunked request bodies (no socket: the bytes come from memory)."""

from __future__ import annotations

import io

import pytest

from lambdapool._errors import BadRequest
from lambdapool._invocation import parse_body
from lambdapool.emulator.http._server import ChunkedBody


def read_all(framed: bytes, size: int = 1 << 20) -> bytes:
    return ChunkedBody(io.BufferedReader(io.BytesIO(framed))).read(size)


def test_a_chunked_body_is_read_across_chunks_extensions_and_trailers() -> None:
    framed = b'4\r\n{"x"\r\n5;name=value\r\n: 12}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    assert read_all(framed) == b'{"x": 12}'


def test_reads_fill_the_buffer_from_several_chunks() -> None:
    body = ChunkedBody(io.BufferedReader(io.BytesIO(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")))
    assert body.read(3) == b"abc"
    assert body.read(10) == b"d"
    assert body.read(10) == b""


def test_a_body_cut_off_inside_its_first_chunk_is_an_end_of_stream_never_more_bytes() -> None:
    # The 90-byte request that crashed the emulator: a chunk of 0x1000000 bytes announced, a few sent.
    with pytest.raises(EOFError):
        read_all(b"1000000\r\n{}", size=6 * 2**20 + 1)


@pytest.mark.parametrize(
    "framed",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # not hex
        b"-2\r\n{}\r\n0\r\n\r\n",  # negative
        b"\r\n{}\r\n0\r\n\r\n",  # empty size
        b"1" * 2000 + b"\r\n",  # a size line too long
        b"2\r\n{}}\r\n0\r\n\r\n",  # a chunk longer than its size
        b"11111111111111111\r\n",  # 17 hex digits: over any body
    ],
)
def test_malformed_framing_is_a_bad_request(framed: bytes) -> None:
    with pytest.raises(BadRequest, match="malformed chunked body"):
        read_all(framed)


def test_a_body_cut_off_in_its_framing_is_an_end_of_stream() -> None:
    with pytest.raises(EOFError):
        read_all(b"2\r\n{}\r\n")  # no last chunk


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
        (b'{"n": NaN}', "NaN is not JSON"),
        (b'{"n": -Infinity}', "-Infinity is not JSON"),
        (b'{"n": 1e400}', "1e400 is out of range"),
    ],
)
def test_json_that_strict_parsers_refuse_is_a_bad_request(raw: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        parse_body(raw)
