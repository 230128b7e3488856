"""A pipeline seen from the emulator: the handle on one pipeline process, and what a pool needs of it.

:class:`PipelineHandle` is all :class:`~lambdapool.emulator._runtime.EndpointRuntime` uses, so its unit
tests run pools over in-memory fakes; :class:`Pipeline` is the real one, a forked process behind a socket.
"""

from __future__ import annotations

import enum
import os
import signal
import socket
import threading
from typing import Any, Protocol

from .._errors import Cancelled, LambdapoolError, OutOfMemory, PipelineCrashed, Timeout
from .._model import EndpointSpec
from ._metrics import Counter
from ._wire import FrameReader, send_frame

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class KillReason(enum.Enum):
    """Why the emulator ended a pipeline (``None`` on a pipeline that died by itself)."""

    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "oom"
    RETIRED = "retired"
    SHUTDOWN = "shutdown"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    FAILED_START = "failed"


def read_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (what Lambda counts), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def describe_exit(status: int | None) -> str:
    """A ``waitpid`` status in words."""
    if status is None:
        return "the pipeline process ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the pipeline process was killed by {name}"
    return f"the pipeline process exited with code {os.WEXITSTATUS(status)}"


def ending(
    pipeline: PipelineHandle, spec: EndpointSpec, start_timeout_s: float | None = None
) -> tuple[LambdapoolError, Counter | None]:
    """What a call is answered when its pipeline ended under it (or while starting, ``start_timeout_s``
    given), and the counter that ending counts: a kill says why, otherwise the process died by itself."""
    if pipeline.kill_reason is KillReason.CANCELLED:
        return Cancelled.running(pipeline.label), None
    if pipeline.kill_reason is KillReason.TIMEOUT:
        if start_timeout_s is not None:
            return Timeout.init(spec.where, start_timeout_s), Counter.TIMEOUTS
        return Timeout.call(spec.where, spec.timeout_s, pipeline.label), Counter.TIMEOUTS
    if pipeline.kill_reason is KillReason.OUT_OF_MEMORY:
        return OutOfMemory.over(spec.where, spec.memory_mb), Counter.OUT_OF_MEMORY
    pipeline.exited.wait(2.0)  # the exit status arrives from the fork server just after the socket closes
    how = describe_exit(pipeline.exit_status)
    starting = start_timeout_s is not None
    error = PipelineCrashed.died(spec.where, how, pipeline.label, starting=starting, exit_status=pipeline.exit_status)
    return error, Counter.CRASHES


class PipelineHandle(Protocol):
    """What a pool needs of a pipeline. One call at a time; every method may be called from any thread."""

    label: str
    pid: int
    init_ms: float
    calls: int
    kill_reason: KillReason | None
    #: When (on the pool's clock) the running call must end (``None`` between calls).
    call_deadline: float | None
    exit_status: int | None
    exited: threading.Event

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """The pipeline's first report (``ready`` or ``init_error``); raises ``TimeoutError`` past
        ``timeout_s``, :class:`~lambdapool._errors.ChannelClosed` or ``OSError`` if it died."""
        ...

    def call(self, header: dict[str, Any], payload: bytes, deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send a call and wait for its reply (header, result bytes); raises like :meth:`wait_ready`."""
        ...

    def rss_bytes(self) -> int | None:
        """Resident memory now, or ``None`` once the process is gone."""
        ...

    def alive(self) -> bool:
        """Whether the process can still take a call (not known to have ended). Cheap: one system call."""
        ...

    def kill(self, reason: KillReason) -> None:
        """End the process now and remember why (the first reason given wins)."""
        ...

    def retire(self) -> None:
        """Ask an idle pipeline to end."""
        ...

    def mark_exited(self, status: int) -> None:
        """Record the process's ``waitpid`` status, reported by the fork server."""
        ...


class Pipeline:
    """One running pipeline process, forked by the fork server, behind its socket. Implements
    :class:`PipelineHandle`; the pidfd it opens is closed once the process has ended."""

    def __init__(self, label: str, pid: int, sock: socket.socket):
        self.label = label
        self.pid = pid
        self.init_ms = 0.0
        self.calls = 0
        self.kill_reason: KillReason | None = None
        self.call_deadline: float | None = None
        self.exit_status: int | None = None
        self.exited = threading.Event()
        self._sock = sock
        self._reader = FrameReader(sock)
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError:
                self._pidfd = None

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        self._sock.settimeout(timeout_s)
        header, _ = self._reader.read()
        self._sock.settimeout(None)  # calls block; the supervisor enforces their deadlines
        return header

    def call(self, header: dict[str, Any], payload: bytes, deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send a call and wait for its reply.

        The socket blocks without a timeout (a timeout would cost a ``poll`` per read): the supervisor kills
        the process once ``deadline`` (on the pool's clock) passes, which ends the wait.
        """
        self.calls += 1
        self.call_deadline = deadline
        try:
            send_frame(self._sock, header, payload)
            return self._reader.read()
        finally:
            self.call_deadline = None

    def rss_bytes(self) -> int | None:
        return read_rss_bytes(self.pid)

    def alive(self) -> bool:
        """The exit is not reported and the socket is not at its end (a dead process closed its side)."""
        if self.exited.is_set():
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def kill(self, reason: KillReason) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif not self.exited.is_set():
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        self._release()

    def retire(self) -> None:
        """Closing an idle pipeline's socket makes it exit cleanly."""
        self.kill_reason = self.kill_reason or KillReason.RETIRED
        self._release()

    def mark_exited(self, status: int) -> None:
        self.exit_status = status
        self.exited.set()
        self._close_pidfd()

    def _release(self) -> None:
        """Let the process go: no signal will be sent to it any more, so its descriptors are closed now
        (its exit, reported later or never, finds nothing left to close)."""
        self._close_pidfd()
        self._close_socket()

    def _close_pidfd(self) -> None:
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            try:
                os.close(pidfd)
            except OSError:
                pass

    def _close_socket(self) -> None:
        # Shut the connection down before closing: a process the function forked may hold a copy of the
        # socket, and only a shutdown wakes a thread blocked reading it here.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
