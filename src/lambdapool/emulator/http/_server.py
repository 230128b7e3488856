"""The emulator's HTTP server: Werkzeug's threaded WSGI server, made to hold against any client.

- **Framing is never trusted**: a chunked body is de-chunked here, strictly (a cut-off or malformed chunk is a
  400, never a read past what arrived); a bad or duplicated ``Content-Length``, or one beside
  ``Transfer-Encoding``, is a 400; a request whose headers never end is never executed.
- **Every protocol error is a 400 ``BadRequest`` JSON body** saying what was wrong (a bad request line or
  header line, a request line or headers over their limits, an HTTP version other than 1.x, a request too
  slow to arrive), like every other error: DESIGN.md's table has 400 for malformed requests.
- **Slow clients are cut off**: a request must arrive (line, headers and body) within its time limits and a
  kept-alive connection may idle only so long; one reaper thread enforces the deadlines of every connection.
- **Connections are capped**: past ``max_connections`` a new connection is answered 503 ``Overloaded`` with
  ``Retry-After`` at once; the listen backlog is deep enough that a burst is queued, not reset.
- **Connections are kept alive** (HTTP/1.1's default; HTTP/1.0 with ``Connection: keep-alive``), which
  Werkzeug's own server never does: a response always carries its ``Content-Length``; what is left of a
  request's body that the view did not read is drained (up to :data:`KEEP_ALIVE_DRAIN_BYTES`, else the
  connection is closed) so that the next request starts where this one ended; requests a client pipelined
  are served in order from the connection's buffer; a client that half-closes gets its answer, then the
  connection ends; an idle connection is closed after ``idle_timeout_s``.

Every connection thread, the reaper and the rejections are owned by :class:`EmulatorServer` and ended by
:meth:`EmulatorServer.close_connections`.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import logging
import re
import resource
import socket
import threading
import time
from http import HTTPStatus
from http.client import HTTPMessage
from typing import IO, Any, cast

from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from ..._errors import BadRequest, LambdapoolError, Overloaded

log = logging.getLogger("lambdapool.server")

#: The listen backlog: a burst waits in the kernel's queue (capped by net.core.somaxconn), it is not reset.
LISTEN_BACKLOG = 4096
MAX_REQUEST_LINE_BYTES = 65536
MAX_HEADER_LINE_BYTES = 65536
MAX_HEADER_LINES = 100
_CHUNK_SIZE_LINE_BYTES = 1024
_HEX = frozenset("0123456789abcdefABCDEF")
#: A header line: a token, a colon (no space before it), a value.
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*\r?\n")
#: The most of a body a view left unread that is drained to keep the connection (beyond, it is closed).
KEEP_ALIVE_DRAIN_BYTES = 2**20
#: How many worker threads may wait for a connection at once (beyond, a worker ends when its connection does).
MAX_SPARE_WORKERS = 8
#: Response headers the server sets itself.
_FRAMING_HEADERS = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


def _version_number(version: str) -> tuple[int, int] | None:
    """``(1, 1)`` for ``HTTP/1.1``; ``None`` for what is not ``HTTP/<digits>.<digits>`` (as the standard library
    reads it: leading zeros ignored, at most 10 digits each)."""
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(part.isdigit() and part.isascii() and len(part) <= 10 for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def default_max_connections() -> int:
    """Half the descriptors this process may open (the rest are for pipelines and files), between 16 and 1000."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = soft if soft != resource.RLIM_INFINITY else 100_000
    return max(16, min(1000, (budget - 128) // 2))


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many may be connected (seconds; a count)."""

    header_timeout_s: float = 10.0  # from the request line's first byte to the end of the headers
    body_timeout_s: float = 60.0  # for the whole body, once the headers are in
    idle_timeout_s: float = 30.0  # a kept-alive connection waiting for its next request
    max_connections: int = dataclasses.field(default_factory=default_max_connections)


class ChunkedBody(io.RawIOBase):
    """A ``Transfer-Encoding: chunked`` body read strictly from ``rfile``: each chunk's size line is parsed
    (hex, extensions ignored), exactly that many bytes are read, and the stream ends after the last chunk and
    its trailers. Raises :class:`BadRequest` for malformed framing and ``EOFError`` when the connection ends
    first; never returns bytes that did not arrive."""

    def __init__(self, rfile: Any):
        self._rfile = rfile
        self._left = 0  # bytes left in the current chunk
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from as many chunks as it takes (fewer bytes only at the end of the body)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and not self._done:
            if self._left == 0:
                self._left = self._next_chunk_size()
                if self._left == 0:
                    self._finish()
                    break
            data = self._rfile.read(min(len(view) - filled, self._left))
            if not data:
                raise EOFError("the connection ended inside a chunk")
            view[filled : filled + len(data)] = data
            filled += len(data)
            self._left -= len(data)
            if self._left == 0:
                self._expect_line_end()
        return filled

    def _line(self) -> bytes:
        line: bytes = self._rfile.readline(_CHUNK_SIZE_LINE_BYTES + 1)
        if not line:
            raise EOFError("the connection ended inside the chunked framing")
        if len(line) > _CHUNK_SIZE_LINE_BYTES or not line.endswith(b"\n"):
            raise BadRequest("malformed chunked body: a framing line is too long")
        return line

    def _next_chunk_size(self) -> int:
        size = self._line().split(b";", 1)[0].strip(b" \t\r\n").decode("latin-1")
        if not size or len(size) > 16 or not set(size) <= _HEX:
            raise BadRequest(f"malformed chunked body: {size[:20]!r} is not a chunk size")
        return int(size, 16)

    def _expect_line_end(self) -> None:
        if self._line().strip(b"\r\n"):
            raise BadRequest("malformed chunked body: a chunk is longer than its size")

    def _finish(self) -> None:
        for _ in range(MAX_HEADER_LINES):  # trailers, up to the empty line
            if not self._line().strip(b"\r\n"):
                self._done = True
                return
        raise BadRequest("malformed chunked body: too many trailer lines")


class _Deadlines:
    """The deadline of every connection (``time.monotonic()``, or ``None`` while its request runs), enforced
    by one thread: past it, the connection's reading side is shut down, which ends the read waiting on it."""

    def __init__(self, interval_s: float = 0.25):
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float | None] = {}
        self.expired: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="lambdapool-http-deadlines", daemon=True)
        self._thread.start()

    def set(self, connection: socket.socket, seconds: float | None) -> None:
        with self._lock:
            self._deadlines[connection] = None if seconds is None else time.monotonic() + seconds

    def forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(connection, None)
            self.expired.discard(connection)

    def connections(self) -> list[socket.socket]:
        with self._lock:
            return list(self._deadlines)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _reap(self) -> None:
        while not self._stopping.wait(self._interval_s):
            now = time.monotonic()
            with self._lock:
                late = [
                    connection
                    for connection, deadline in self._deadlines.items()
                    if deadline is not None and deadline < now and connection not in self.expired
                ]
                self.expired.update(late)
            for connection in late:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


class EmulatorRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler with strict framing, deadlines and JSON protocol errors."""

    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # answers go out as written

    def handle_one_request(self) -> None:
        deadlines, limits = self.server.deadlines, self.server.limits
        self._answered = False
        deadlines.set(self.connection, limits.idle_timeout_s)
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
        if not self.raw_requestline:
            self._close(timed_out=False)
            return
        deadlines.set(self.connection, limits.header_timeout_s)
        if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
            self.requestline = self.request_version = self.command = ""
            self.send_json_error(BadRequest("the request line is over 64 KiB"))
            return
        header_lines = self._read_header_lines()
        if header_lines is None:  # the client left (or was too slow), or a line was refused: run nothing
            if not self._answered:
                self._close(timed_out=self.connection in deadlines.expired)
            return
        if not self._parse_request(header_lines):
            return
        framing = self._framing_error()
        if framing is not None:
            self.send_json_error(framing)
            return
        deadlines.set(self.connection, limits.body_timeout_s)
        self.run_wsgi()
        self.wfile.flush()

    def _close(self, *, timed_out: bool) -> None:
        if timed_out and self.raw_requestline:
            limits = self.server.limits
            self.send_json_error(
                BadRequest(
                    "the request did not arrive in time",
                    f"a request's line and headers must arrive within {limits.header_timeout_s:g} s and its body "
                    f"within {limits.body_timeout_s:g} s",
                )
            )
        self.close_connection = True

    def _read_header_lines(self) -> list[bytes] | None:
        """The header lines (without the empty line that ends them), or ``None`` if the connection ends first
        (or a 400 was answered for a header line that is too long, malformed, or one too many)."""
        lines: list[bytes] = []
        for _ in range(MAX_HEADER_LINES + 1):
            line = self.rfile.readline(MAX_HEADER_LINE_BYTES + 1)
            if len(line) > MAX_HEADER_LINE_BYTES:
                self.send_json_error(BadRequest("a header line is over 64 KiB"))
                return None
            if not line or not line.endswith(b"\n"):
                return None
            if line in (b"\r\n", b"\n"):
                return lines
            if not _HEADER_LINE.match(line):  # no colon, space before it, a folded line...: RFC 9112 says 400
                self.send_json_error(BadRequest(f"malformed header line {line[:60]!r}"))
                return None
            lines.append(line)
        self.send_json_error(BadRequest(f"more than {MAX_HEADER_LINES} header lines"))
        return None

    def _parse_request(self, header_lines: list[bytes]) -> bool:
        """The request line and the headers, read as ``BaseHTTPRequestHandler.parse_request`` reads them (the
        same attributes, errors and connection rules), but the headers without the email parser it runs on
        every request: each line was already checked to be a single ``name:value`` line. ``Expect:
        100-continue`` is answered by :meth:`run_wsgi`, once. False once an error has been answered."""
        self.command = None  # type: ignore[assignment]  # as the standard library leaves it until it knows
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _version_number(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
                return False
            self.close_connection = number < (1, 1)
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        if path.startswith("//"):  # as the standard library does: never read as an absolute URI without scheme
            path = "/" + path.lstrip("/")
        self.command, self.path = command, path
        self.headers = headers = HTTPMessage()
        for line in header_lines:
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name] = value.lstrip(" \t").rstrip("\r\n")
        connection = headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        return True

    def _framing_error(self) -> LambdapoolError | None:
        lengths = self.headers.get_all("Content-Length") or []
        encodings = self.headers.get_all("Transfer-Encoding") or []
        chunked = bool(encodings)
        if encodings and [encoding.strip().lower() for encoding in encodings] != ["chunked"]:
            return BadRequest(f"unsupported Transfer-Encoding {', '.join(encodings)[:60]!r}: only 'chunked' is")
        if len(lengths) > 1:
            return BadRequest("the request has more than one Content-Length")
        if lengths and chunked:
            return BadRequest("the request has both a Content-Length and Transfer-Encoding: chunked")
        if lengths and not (lengths[0].strip().isascii() and lengths[0].strip().isdigit()):
            return BadRequest(f"invalid Content-Length {lengths[0][:40]!r}: it must be a number of bytes")
        return None

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        if environ.get("wsgi.input_terminated"):  # chunked: our strict reader, not Werkzeug's DechunkedInput
            environ["wsgi.input"] = ChunkedBody(self.rfile)
        else:  # exactly the body, so that what follows it on the connection is the next request
            length = environ.get("CONTENT_LENGTH", "").strip()
            environ["wsgi.input"] = LimitedStream(cast(IO[bytes], self.rfile), int(length) if length else 0)
            environ["wsgi.input_terminated"] = True
        return environ

    def run_wsgi(self) -> None:
        """Run the application and answer, keeping the connection unless the client or the request's framing
        says otherwise (see the module docstring). The response is sent whole, with its length."""
        expect = self.headers.get("Expect", "").lower().strip(" \t")
        if expect == "100-continue" and (_version_number(self.request_version) or (0, 9)) >= (1, 1):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer[:] = [status, headers]  # nothing is sent before the application returns: it may start again
            return chunks.append

        chunks: list[bytes] = []
        try:
            iterable = self.server.app(environ, start_response)
            try:
                chunks.extend(iterable)
            finally:
                closing = getattr(iterable, "close", None)
                if closing is not None:
                    closing()
        except Exception:
            log.exception("internal error answering %s %s", self.command, self.path)
            self.send_json_error(LambdapoolError("the emulator failed", "see its log"))
            return
        status, headers = answer
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        body = b"".join(chunks)
        keep = not self.close_connection and self._drained(environ["wsgi.input"])
        try:
            self.send_response(code, reason)
            for name, value in headers:
                if name.lower() not in _FRAMING_HEADERS:
                    self.send_header(name, value)
            if not (100 <= code < 200 or code in (204, 304)):
                declared = next((v for n, v in headers if n.lower() == "content-length"), None)
                self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(body)))
            if not keep:
                self.send_header("Connection", "close")
            elif self.request_version == "HTTP/1.0":
                self.send_header("Connection", "keep-alive")
            self._headers_buffer.append(b"\r\n")  # end_headers(), and the body in the same write (one segment:
            if self.command != "HEAD":  # a second small one would wait for the client's delayed ACK)
                self._headers_buffer.append(body)
            self.flush_headers()
            self.wfile.flush()
        except OSError:  # the client left
            keep = False
        self.close_connection = not keep

    def _drained(self, stream: Any) -> bool:
        """Whether the request's body has been read to its end, draining what the view left (within
        :data:`KEEP_ALIVE_DRAIN_BYTES`): only then can the connection carry another request."""
        try:
            if isinstance(stream, LimitedStream):
                if stream.limit - stream._pos > KEEP_ALIVE_DRAIN_BYTES:
                    return False
                stream.exhaust()
                return bool(stream.is_exhausted)
            left = KEEP_ALIVE_DRAIN_BYTES
            while left > 0:
                data = stream.read(min(left, 65536))
                if not data:
                    return True
                left -= len(data)
            return bool(stream.read(1) == b"")
        except (OSError, EOFError, ValueError, LambdapoolError, ClientDisconnected):
            return False

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's protocol errors, as JSON error bodies."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "bad request"
        text = message or phrase
        self.send_json_error(BadRequest(f"malformed request: {text}", explain or text))

    def send_json_error(self, error: LambdapoolError) -> None:
        """Answer ``error`` as the JSON envelope and close the connection."""
        self._answered = self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") in ("HTTP/0.9", ""):
            self.request_version = "HTTP/1.1"  # a request line too bad to parse still gets an HTTP/1.1 answer
        body = error.to_json()
        try:
            self.send_response(error.status)
            for name, value in {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "Connection": "close",
                **error.headers(),
            }.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the emulator logs calls itself

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.address_string(), *args)


class EmulatorServer(ThreadedWSGIServer):
    """The threaded WSGI server with the guarantees in this module's docstring.

    Connections are accepted by the threads that serve them: each worker thread waits in ``accept()`` (the
    kernel wakes one waiter per connection), serves the connection it got, then waits again. A worker that
    takes a connection when no other waits starts one that does, and at most ``MAX_SPARE_WORKERS`` wait at
    once (the others end once their connection ends). Where one thread accepted and handed each connection to
    another, every connection cost two wake-ups and a hand-off of the GIL between them.
    """

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True  # owned all the same: close_connections() ends and joins them

    def __init__(self, host: str, port: int, app: Any, limits: ConnectionLimits | None = None):
        self.limits = limits or ConnectionLimits()
        self.deadlines = _Deadlines()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a worker stops waiting in accept()
        self._connection_threads: set[threading.Thread] = set()  # workers and rejecting threads
        self._waiting = 0  # workers in accept()
        self._serving = 0  # connections being served
        self._rejecting = 0  # connections being answered 503
        self._accepting = False  # between serve_forever() and the end of accepting
        self._closing = False
        self._stop_serving = threading.Event()
        self._served = threading.Event()  # serve_forever() has returned
        self._served.set()
        try:
            super().__init__(host, port, app, handler=EmulatorRequestHandler)
        except BaseException:
            self.deadlines.stop()
            raise

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept and serve connections until :meth:`shutdown` or Ctrl-C (``KeyboardInterrupt`` ends it, as in
        Werkzeug's server); then no connection is accepted any more."""
        with self._lock:
            if self._closing or self._accepting or self._stop_serving.is_set():
                return
            self._accepting = True
            self._served.clear()
        try:
            self._start_worker()
            while not self._stop_serving.wait(poll_interval):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self._stop_accepting()
            self._served.set()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return, and wait for it."""
        self._stop_serving.set()
        self._served.wait()

    def server_close(self) -> None:
        self._stop_serving.set()
        self._stop_accepting()
        super().server_close()

    def _stop_accepting(self, timeout_s: float = 5.0) -> None:
        """No connection is accepted from here on: the workers waiting in ``accept()`` are woken (a listening
        socket shut down makes it fail at once) and have left it when this returns."""
        with self._changed:
            self._accepting = False
            self._changed.notify_all()
        try:
            self.socket.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        with self._changed:
            self._changed.wait_for(lambda: self._waiting == 0, timeout_s)

    def _start_thread(self, name: str, target: Any, *args: Any) -> bool:
        """Start a connection thread, owned from here on; whether one could be had."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._connection_threads.add(thread)
        try:
            thread.start()
        except RuntimeError:
            with self._lock:
                self._connection_threads.discard(thread)
            return False
        return True

    def _start_worker(self) -> None:
        if not self._start_thread("lambdapool-http-worker", self._work):
            log.warning("cannot start another thread to serve connections: they wait for a worker to be free")

    def _work(self) -> None:
        """Wait for a connection, serve it, and again, until accepting stops or enough others wait."""
        try:
            while self._next_connection():
                pass
        finally:
            with self._lock:
                self._connection_threads.discard(threading.current_thread())

    def _next_connection(self) -> bool:
        """Accept one connection and serve it (or answer it 503 past the limit); whether to go on. While as
        many connections are served and refused as twice the limit, none is accepted: a flood waits in the
        listen backlog for a thread to answer it, rather than be closed unanswered."""
        limit = 2 * self.limits.max_connections
        with self._changed:
            self._changed.wait_for(lambda: not self._accepting or self._serving + self._rejecting < limit)
            if not self._accepting or self._closing or self._waiting >= MAX_SPARE_WORKERS:
                return False
            self._waiting += 1
        try:
            request, client_address = self.socket.accept()
        except OSError as error:
            with self._changed:
                self._waiting -= 1
                self._changed.notify_all()
                accepting = self._accepting
            if accepting and error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("cannot accept a connection: %s", error.strerror)
                self._stop_serving.wait(0.1)  # descriptors or memory run out: not a busy loop meanwhile
            return accepting
        with self._changed:
            self._waiting -= 1
            self._changed.notify_all()
            serve = self._serving < self.limits.max_connections and not self._closing
            if serve:
                self._serving += 1
                another = self._waiting == 0 and self._accepting
            else:
                self._rejecting += 1
        if not serve:
            self._start_rejecting(request, client_address)
            return True
        if another:
            self._start_worker()
        self._serve(request, client_address)
        return True

    def _start_rejecting(self, request: socket.socket, client_address: Any) -> None:
        if not self._start_thread("lambdapool-http-reject", self._reject, request, client_address):
            self.shutdown_request(request)  # no thread to answer it
            with self._changed:
                self._rejecting -= 1
                self._changed.notify_all()

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.deadlines.forget(request)
            self.shutdown_request(request)
            with self._changed:
                self._serving -= 1
                self._changed.notify_all()

    def _reject(self, request: socket.socket, client_address: Any) -> None:
        """Answer 503 ``Overloaded`` without reading the request (a little of it is drained, so that closing
        does not reset the connection before the client reads the answer)."""
        try:
            error = Overloaded.at_limit(self.limits.max_connections)
            body = error.to_json()
            head = (
                f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                f"\r\nRetry-After: {error.retry_after_s}\r\nConnection: close\r\n\r\n"
            )
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
            request.shutdown(socket.SHUT_WR)
            while request.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self.shutdown_request(request)
            with self._changed:
                self._rejecting -= 1
                self._changed.notify_all()
                self._connection_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error serving a connection from %s", client_address)

    def close_connections(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, end every connection (a request still running finishes its call) and join every
        connection thread (those waiting for a connection included) and the reaper."""
        with self._lock:
            self._closing = True
        self._stop_serving.set()
        self._stop_accepting()
        with self._lock:
            threads = list(self._connection_threads)
        for connection in self.deadlines.connections():
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.deadlines.stop()
