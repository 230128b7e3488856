"""The fork server process: one clean, single-threaded process that preloads libraries and forks pipelines.

Forking from the emulator itself would be unsafe (it runs many threads), and starting a fresh interpreter
per pipeline costs tens of milliseconds. The fork server is started once
(``python -m lambdapool.emulator.pipelines._forkserver_process``); it imports the libraries the app uses (never the
app itself: init code must run in each pipeline), then forks a pipeline per request. Each pipeline gets its
own socket to the emulator, passed over the control socket with ``SCM_RIGHTS``.

Control protocol (frames of :mod:`lambdapool.emulator.pipelines._wire`): the emulator sends ``{"op": "spawn", "token",
"config"}`` with one file descriptor; the server answers ``{"op": "spawned", "token", "pid"}`` and, when a
pipeline ends, ``{"op": "exited", "pid", "status"}`` (a ``waitpid`` status), and removes its private ``/tmp``.
When the control socket closes, the server kills every pipeline, removes their ``/tmp`` directories and exits:
it ends with the emulator, however the emulator ends. If the emulator died (the server has another parent
now), it also removes the emulator's directory of ``/tmp`` directories (``--tmp-root``), which nobody else
would: nothing of the emulator is left behind.
"""

from __future__ import annotations

import array
import ctypes
import gc
import importlib
import os
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..._errors import ChannelClosed
from ._config import PipelineConfig
from ._wire import PREFIX_SIZE, decode_prefix, finish_frame, recv_exactly, send_frame

_PR_SET_PDEATHSIG = 1
_SA_NOCLDSTOP = 1
_SA_ONSTACK = 0x08000000


class _SigAction(ctypes.Structure):
    """``struct sigaction`` as glibc and musl lay it out on Linux (mips, whose layout differs, is left alone:
    see :func:`_no_stop_notifications`)."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ubyte * 128),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the fork server) dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _no_stop_notifications() -> None:
    """Ask for ``SIGCHLD`` only when a pipeline ends, not when it is stopped or continued (``SA_NOCLDSTOP``),
    which Python's :func:`signal.signal` cannot say. The emulator freezes and thaws an idle pipeline around each
    call (``SIGSTOP``, ``SIGCONT``): without it, each call woke this process twice for nothing. Nothing changes
    if the handler Python installed is not recognised (its ``SA_ONSTACK`` flag not where it is expected)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        action = _SigAction()
        if libc.sigaction(signal.SIGCHLD, None, ctypes.byref(action)) != 0 or not action.flags & _SA_ONSTACK:
            return
        action.flags |= _SA_NOCLDSTOP
        libc.sigaction(signal.SIGCHLD, ctypes.byref(action), None)
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
        os.setsid()  # a session of its own: what it starts stays in it when the pipeline dies (see session_members)
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


def serve(control: socket.socket, preload: Sequence[str], tmp_root: str = "", started: float | None = None) -> None:
    """The fork server's main loop (runs in its own process).

    Its greeting says how long its own set-up took since ``started`` (``time.perf_counter()`` at
    :func:`main`), the preloads left out: ``ownMs``. The emulator takes it off the time the server took to
    start, so that what each cold start adds is what a fresh interpreter importing the preloaded libraries
    costs (Lambda's Init), not the fork server's own machinery (the pipeline side, process naming, freezing
    the heap), which a fresh interpreter would not run."""
    started = time.perf_counter() if started is None else started
    emulator_pid = os.getppid()
    preload_started = time.perf_counter()
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception as exc:  # the pipeline will import it itself and report the error properly
            print(f"lambdapool: could not preload {module}: {exc}", file=sys.stderr)
    preload_s = time.perf_counter() - preload_started
    from . import _worker  # preloaded for every pipeline

    _worker.prepare_naming()
    _worker.prepare_logging()

    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _no_stop_notifications()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.collect()
    gc.freeze()  # the preloaded objects stay frozen in pipelines too: the collector never touches their pages
    children: dict[int, str] = {}  # pid: its private /tmp ("" if none)
    own_ms = (time.perf_counter() - started - preload_s) * 1000
    send_frame(control, {"op": "ready", "pid": os.getpid(), "ownMs": own_ms})
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
                children[pid] = str(request["config"].get("tmpDir", ""))
                send_frame(control, {"op": "spawned", "token": request["token"], "pid": pid})
    except (ChannelClosed, OSError):
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, tmp_dir in children.items():
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            if tmp_dir:
                shutil.rmtree(tmp_dir, ignore_errors=True)
        if tmp_root and os.getppid() != emulator_pid:  # the emulator died: it will not remove it
            shutil.rmtree(tmp_root, ignore_errors=True)


def _reap(control: socket.socket, children: dict[int, str]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        tmp_dir = children.pop(pid, None)
        if tmp_dir:  # the emulator removes it too, once it has ended what the pipeline started: it may be dead
            shutil.rmtree(tmp_dir, ignore_errors=True)
        send_frame(control, {"op": "exited", "pid": pid, "status": status})


def main(argv: Sequence[str] | None = None) -> None:
    started = time.perf_counter()
    import argparse  # here, not at the top: its import is the server's own set-up (see serve)

    parser = argparse.ArgumentParser(prog="python -m lambdapool.emulator.pipelines._forkserver_process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--preload", default="")
    parser.add_argument("--tmp-root", default="")
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.fd)
    serve(control, [name for name in args.preload.split(",") if name], args.tmp_root, started)


if __name__ == "__main__":
    main()
