"""The fork server: one clean, single-threaded process that preloads libraries and forks pipelines.

Forking from the emulator itself would be unsafe (it runs many threads), and starting a fresh interpreter
per pipeline costs tens of milliseconds. The fork server is started once; it imports the libraries the app
uses (never the app itself: init code must run in each pipeline), then forks a pipeline per request. Each
pipeline gets its own socket to the emulator, passed over the control socket with ``SCM_RIGHTS``.

Control protocol (frames of :mod:`lambdapool.emulator._wire`): the emulator sends ``{"op": "spawn", "token", "config"}``
with one file descriptor; the server answers ``{"op": "spawned", "token", "pid"}`` and, when a pipeline
ends, ``{"op": "exited", "pid", "status"}`` (a ``waitpid`` status). When the control socket closes, the
server kills every pipeline and exits.
"""

from __future__ import annotations

import argparse
import array
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ChannelClosed, ForkServerError
from ._project import PipelineConfig
from ._wire import (
    PREFIX_SIZE,
    FrameReader,
    decode_prefix,
    encode_frame,
    finish_frame,
    recv_exactly,
    recv_frame,
    send_frame,
)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the fork server) dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _recv_spawn(control: socket.socket) -> tuple[dict[str, Any], int]:
    """Receive one spawn request and the descriptor that came with it."""
    fds = array.array("i")
    message, ancillary, _flags, _addr = control.recvmsg(PREFIX_SIZE, socket.CMSG_SPACE(fds.itemsize))
    if not message:
        raise ChannelClosed("the emulator closed the control socket")
    message += recv_exactly(control, PREFIX_SIZE - len(message))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds) != 1:
        raise ValueError("a spawn request must carry exactly one descriptor")
    header, _ = finish_frame(control, *decode_prefix(message))
    return header, fds[0]


def _child(control: socket.socket, wakeup_r: int, fd: int, config: dict[str, Any]) -> None:
    """In the forked pipeline: drop the server's state and run the worker. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        control.close()
        os.close(wakeup_r)
        _die_with_parent()
        from . import _worker

        code = _worker.run(socket.socket(fileno=fd), PipelineConfig.from_json(config))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(control: socket.socket, preload: Sequence[str]) -> None:
    """The fork server's main loop (runs in its own process)."""
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the pipeline will import it itself and report the error properly
            print(f"lambdapool: could not preload {module}: {exc}", file=sys.stderr)
    from . import _worker  # noqa: F401  (preloaded for every pipeline)

    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.collect()
    gc.freeze()  # the preloaded objects stay frozen in pipelines too: the collector never touches their pages
    children: set[int] = set()
    send_frame(control, {"op": "ready", "pid": os.getpid()})
    try:
        while True:
            readable, _, _ = select.select([control.fileno(), wakeup_r], [], [])
            if wakeup_r in readable:
                os.read(wakeup_r, 4096)
                _reap(control, children)
            if control.fileno() in readable:
                request, fd = _recv_spawn(control)
                pid = os.fork()
                if pid == 0:
                    _child(control, wakeup_r, fd, request["config"])
                os.close(fd)
                children.add(pid)
                send_frame(control, {"op": "spawned", "token": request["token"], "pid": pid})
    except (ChannelClosed, OSError):
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        send_frame(control, {"op": "exited", "pid": pid, "status": status})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lambdapool.emulator._forkserver")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--preload", default="")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.fd)
    serve(control, [name for name in args.preload.split(",") if name])


class ForkServer:
    """The emulator's handle on the fork server process. A context manager; thread-safe.

    ``on_exit(pid, status)`` is called (from a reader thread) whenever a pipeline ends.
    Start it from a long-lived thread: pipelines are tied to the fork server's lifetime.
    """

    def __init__(self, preload: Sequence[str] = (), on_exit: Callable[[int, int], None] | None = None):
        self._preload = list(preload)
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[int]]] = {}
        self._next_token = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ForkServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until its preloading is done."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lambdapool.emulator._forkserver",
                    "--fd",
                    str(theirs.fileno()),
                    "--preload",
                    ",".join(self._preload),
                ],
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # a Ctrl-C in the terminal reaches the emulator only
            )
        finally:
            theirs.close()
        self._control = ours
        ours.settimeout(timeout_s)
        try:
            header, _ = recv_frame(ours)
        except (ChannelClosed, TimeoutError, OSError) as exc:
            self.stop()
            raise ForkServerError(f"the fork server did not start: {exc}") from exc
        if header.get("op") != "ready":
            self.stop()
            raise ForkServerError(f"unexpected fork server greeting {header!r}")
        ours.settimeout(None)
        self._reader = threading.Thread(target=self._read, args=(ours,), name="lambdapool-forkserver", daemon=True)
        self._reader.start()

    def spawn(self, config: PipelineConfig, timeout_s: float = 30.0) -> tuple[int, socket.socket]:
        """Fork a pipeline running ``config``; returns its pid and the emulator's end of its socket.
        Raises :class:`ForkServerError` if the fork server is gone or does not answer."""
        if self._control is None:
            raise ForkServerError("the fork server is not running")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        event = threading.Event()
        result: list[int] = []
        try:
            with self._lock:
                token = self._next_token
                self._next_token += 1
                self._pending[token] = (event, result)
                frame = encode_frame({"op": "spawn", "token": token, "config": config.to_json()})
                self._control.sendmsg(
                    [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))]
                )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"the fork server is gone: {exc}") from exc
        finally:
            theirs.close()
        if not event.wait(timeout_s) or not result:
            ours.close()
            with self._lock:
                self._pending.pop(token, None)
            raise ForkServerError("the fork server did not answer a spawn request")
        return result[0], ours

    def _read(self, control: socket.socket) -> None:
        """The reader thread: answers to spawn requests and pipeline exits, until the socket closes.

        It holds its own reference to the socket: :meth:`stop` may clear ``self._control`` at any time.
        """
        reader = FrameReader(control)
        try:
            while True:
                header, _ = reader.read()
                if header["op"] == "spawned":
                    with self._lock:
                        event, result = self._pending.pop(header["token"], (None, []))
                    if event is not None:
                        result.append(header["pid"])
                        event.set()
                elif header["op"] == "exited" and self._on_exit is not None:
                    self._on_exit(header["pid"], header["status"])
        except (ChannelClosed, OSError, ValueError):
            pass
        finally:
            with self._lock:
                pending, self._pending = self._pending, {}
            for event, _ in pending.values():
                event.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the control socket; the server kills its pipelines and exits (killed if it lingers)."""
        control, self._control = self._control, None
        if control is not None:
            try:
                control.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            control.close()
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout_s)


if __name__ == "__main__":
    main()
