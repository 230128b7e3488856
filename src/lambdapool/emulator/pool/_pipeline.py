"""A pipeline seen from the emulator: the handle on one pipeline process, and what a pool needs of it.

:class:`PipelineHandle` is all :class:`~lambdapool.emulator.pool._runtime.EndpointRuntime` uses, so its unit
tests run pools over in-memory fakes; :class:`Pipeline` is the real one, a forked process behind a socket.

A pipeline stands for a Lambda execution environment, so its handle answers for everything in it: the
processes the function starts (counted in its memory, killed with it: found through ``/proc``, since the fork
server, not the emulator, is the pipeline's parent) and its private ``/tmp`` (``TMPDIR``), removed with it.
"""

from __future__ import annotations

import enum
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ..._errors import Cancelled, ChannelClosed, LambdapoolError, OutOfMemory, PipelineCrashed, Timeout
from ..._limits import TMP_LIMIT_MB
from ..._model import EndpointSpec
from ..pipelines._processes import (
    MAX_STOP_ROUNDS,
    SCAN_MAX_AGE_S,
    TMP_CHECK_INTERVAL_S,
    Process,
    descendants,
    directory_bytes,
    is_running,
    process_table,
    read_private_bytes,
    read_rss_bytes,
    read_stat,
    session_members,
    signal_process,
)
from ..pipelines._supervision import ProcessExit
from ..pipelines._wire import FrameReader, send_frame
from ._metrics import Counter


class KillReason(enum.Enum):
    """Why the emulator ended a pipeline (``None`` on a pipeline that died by itself)."""

    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "oom"
    RETIRED = "retired"
    SHUTDOWN = "shutdown"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    FAILED_START = "failed"
    TMP_FULL = "tmp"
    INIT_RERUN = "init-rerun"  # its init ran past Lambda's Init limit: another pipeline runs it again


def describe_exit(status: int | None) -> str:
    """A ``waitpid`` status in words."""
    if status is None:
        return "the pipeline process ended"
    return f"the pipeline process {ProcessExit.of_wait_status(status)}"


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
        detail = (
            f"the resident memory of the pipeline and of the processes it started went over {spec.memory_mb} MB; "
            "it was killed and is replaced"
        )
        return OutOfMemory.over(spec.where, spec.memory_mb, detail), Counter.OUT_OF_MEMORY
    starting = start_timeout_s is not None
    if pipeline.kill_reason is KillReason.TMP_FULL:
        how = f"its /tmp (TMPDIR) went over {TMP_LIMIT_MB} MB, Lambda's ephemeral storage, so it was killed"
        return PipelineCrashed.died(spec.where, how, pipeline.label, starting=starting), Counter.CRASHES
    pipeline.exited.wait(2.0)  # the exit status arrives from the fork server just after the socket closes
    how = describe_exit(pipeline.exit_status)
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
    #: When its init began, if it is the re-run of an init that ran past Lambda's Init limit (else ``None``).
    init_rerun_at: float | None
    exit_status: int | None
    exited: threading.Event

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """The pipeline's first report (``ready`` or ``init_error``); raises ``TimeoutError`` past
        ``timeout_s``, :class:`~lambdapool._errors.ChannelClosed` or ``OSError`` if it died."""
        ...

    def send(self, header: dict[str, Any], payload: bytes, deadline: float) -> None:
        """Send a call that must end by ``deadline`` (on the pool's clock); raises ``OSError`` or
        :class:`~lambdapool._errors.ChannelClosed` if the pipeline is gone (it has then received nothing)."""
        ...

    def receive(self, wait_s: float | None) -> tuple[dict[str, Any], bytes] | None:
        """The reply to the call sent (header, result bytes), or ``None`` if none has come within ``wait_s``
        (``None``: wait for it; the supervisor ends a call past its deadline). Raises like
        :meth:`wait_ready`."""
        ...

    def rss_bytes(self) -> int | None:
        """Resident memory now (of everything the pipeline runs: its processes too), or ``None`` once the
        process is gone. What the supervisor polls, every few milliseconds, while a call runs."""
        ...

    def freeze(self) -> None:
        """Stop the pipeline between calls (and the processes it started), as Lambda freezes an idle
        execution environment: its background threads do not run until :meth:`thaw`."""
        ...

    def thaw(self) -> None:
        """Let a frozen pipeline run again (before a call is sent to it)."""
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
    :class:`PipelineHandle`; the pidfd it opens is closed once the process has ended.

    Its socket is used by a call's thread (send, wait, read) while another (the supervisor, a close) may end
    the pipeline. Ending it shuts the socket down, which wakes the user at once; the descriptor itself is
    closed by the last thread out of it, never under one: a descriptor closed under a ``poll`` or a ``recv``
    about to start may be reused at once by another connection, which the call would then wait on, or read.

    The handle answers for the whole execution environment: the processes the function starts count in
    :meth:`rss_bytes` and end when the pipeline is killed, retired or found dead, and ``tmp_dir`` (its
    ``TMPDIR``, when given: the handle owns it) is then removed.
    """

    def __init__(self, label: str, pid: int, sock: socket.socket, tmp_dir: Path | None = None):
        self.label = label
        self.pid = pid
        self.tmp_dir = tmp_dir
        self.init_ms = 0.0
        self.calls = 0
        self.kill_reason: KillReason | None = None
        self.call_deadline: float | None = None
        self.init_rerun_at: float | None = None
        self.exit_status: int | None = None
        self.exited = threading.Event()
        self._sock = sock
        self._reader = FrameReader(sock)
        self._sock_users = 0  # threads using the socket now (guarded by _lock)
        self._sock_ended = False  # shut down: closed as soon as no thread uses it
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError:
                self._pidfd = None
        stat = read_stat(pid)
        #: The pipeline process itself (``None`` where ``/proc`` does not tell).
        self._process: Process | None = (pid, stat.start_ticks) if stat is not None else None
        self._lock = threading.Lock()  # guards the pidfd and the processes seen
        self._ending = threading.Lock()  # one end of the processes at a time
        #: Every process the pipeline started that was seen running (see :meth:`_started_processes`).
        self._started: set[Process] = set()
        self._tmp_checked = float("-inf")  # time.monotonic() of the last look at tmp_dir's size
        self._frozen = False

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        self._enter_socket()
        try:
            self._sock.settimeout(timeout_s)
            header, _ = self._reader.read()
            self._sock.settimeout(None)  # calls block; the supervisor enforces their deadlines
        finally:
            self._leave_socket()
        return header

    def send(self, header: dict[str, Any], payload: bytes, deadline: float) -> None:
        """A dead process's end of the socket is closed, so the send fails (``EPIPE``): no check before it. One
        whose exit was reported is refused before the send (a process it started may hold the socket open)."""
        if self.exited.is_set():
            raise ChannelClosed("the pipeline process has ended")
        self.calls += 1
        self.call_deadline = deadline
        try:
            self._enter_socket()
            try:
                send_frame(self._sock, header, payload)
            finally:
                self._leave_socket()
        except BaseException:
            self.call_deadline = None
            raise

    def receive(self, wait_s: float | None) -> tuple[dict[str, Any], bytes] | None:
        """The reply. The socket blocks without a timeout (a timeout would cost a ``poll`` per read): the
        supervisor kills the process once the call's deadline passes, which ends the wait. A bounded wait
        (``wait_s``) bounds the first read (see :meth:`FrameReader.read_within`)."""
        try:
            self._enter_socket()
            try:
                return self._reader.read() if wait_s is None else self._reader.read_within(wait_s)
            finally:
                self._leave_socket()
        finally:
            self.call_deadline = None

    def rss_bytes(self) -> int | None:
        """The pipeline process's resident memory plus what every process it started adds
        (:func:`read_private_bytes`), as Lambda counts an environment's memory; ``None`` once it has ended.

        The supervisor polls this while a call runs, so it also looks at ``tmp_dir`` then (at most every
        :data:`TMP_CHECK_INTERVAL_S`) and kills the pipeline (:attr:`KillReason.TMP_FULL`) once it holds
        more than :data:`TMP_LIMIT_MB`.
        """
        if self.exited.is_set() or (self._process is not None and not is_running(read_stat(self.pid), self._process)):
            return None
        rss = read_rss_bytes(self.pid)
        if rss is None:
            return None
        started = self._started_processes(SCAN_MAX_AGE_S)
        self._check_tmp()
        return rss + sum(read_private_bytes(pid) for pid, _ in started)

    def kill(self, reason: KillReason) -> None:
        """Kill the pipeline and every process it started; remove its ``tmp_dir``."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self._end_processes(signal.SIGKILL)
        self._release()
        self._remove_tmp_dir()

    def retire(self) -> None:
        """Kill the processes the function started, then close the idle pipeline's socket, which makes it
        exit cleanly; remove its ``tmp_dir``."""
        self.kill_reason = self.kill_reason or KillReason.RETIRED
        self._end_processes(signal.SIGCONT)
        self._release()
        self._remove_tmp_dir()

    def mark_exited(self, status: int) -> None:
        """Record the exit, kill what the pipeline left running and remove its ``tmp_dir``: an execution
        environment ends whole."""
        self.exit_status = status
        self.exited.set()
        self._close_pidfd()
        self._end_processes(signal.SIGKILL)
        self._remove_tmp_dir()

    def _started_processes(self, max_age_s: float) -> list[Process]:
        """Every process the pipeline started that still runs, parents before children: its descendants, and
        those seen before that have left its tree since (their parent ended first: a double fork, or the
        pipeline died) with their own. Remembered, so that those that leave the tree later are still found.
        ``max_age_s``: how old a scan of ``/proc`` may be (see :func:`_processes`)."""
        processes = process_table(max_age_s)
        with self._lock:
            known = list(self._started)
        roots = [process for process in known if is_running(processes.stat(process[0]), process)]
        if self._process is not None and is_running(processes.stat(self.pid), self._process):
            roots.insert(0, self._process)
        found = [process for process in roots if process != self._process] + descendants(processes, roots)
        with self._lock:
            self._started.difference_update(known)
            self._started.update(found)
        return found

    def freeze(self) -> None:
        """Stops the pipeline (every thread of it) and the processes it is known to have started (the
        supervisor finds them during calls; no ``/proc`` walk here, on every call's path)."""
        with self._lock:
            self._frozen = True
            started = list(self._started)
        self._signal(signal.SIGSTOP)
        for process in started:
            signal_process(process, signal.SIGSTOP)

    def thaw(self) -> None:
        with self._lock:
            if not self._frozen:
                return
            self._frozen = False
            started = list(self._started)
        for process in started:
            signal_process(process, signal.SIGCONT)
        self._signal(signal.SIGCONT)

    def _end_processes(self, then: signal.Signals) -> None:
        """Kill every process the pipeline started, then send the pipeline ``then`` (``SIGKILL`` to end it
        too, ``SIGCONT`` to let it go on). The pipeline is stopped first, then each process found, until a
        fresh look finds no other: a stopped process starts none."""
        with self._ending:
            self._signal(signal.SIGSTOP)
            stopped: dict[Process, None] = {}
            for _ in range(MAX_STOP_ROUNDS):
                candidates = self._started_processes(0.0) + session_members(self.pid)
                found = [process for process in dict.fromkeys(candidates) if process not in stopped]
                if not found:
                    break
                for process in found:
                    signal_process(process, signal.SIGSTOP)
                    stopped[process] = None
            for process in stopped:
                signal_process(process, signal.SIGKILL)
            self._signal(then)

    def _signal(self, number: signal.Signals) -> None:
        """Send ``number`` to the pipeline process (through its pidfd while that is open; after that, only if
        its pid still names it)."""
        with self._lock:
            if self._pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._pidfd, number)
                except OSError:
                    pass
                return
        if self.exited.is_set():
            return
        if self._process is not None:
            signal_process(self._process, number)
            return
        try:
            os.kill(self.pid, number)
        except OSError:
            pass

    def _check_tmp(self) -> None:
        """During a call, at most every :data:`TMP_CHECK_INTERVAL_S`: kill the pipeline if ``tmp_dir`` holds
        more than :data:`TMP_LIMIT_MB`."""
        if self.tmp_dir is None or self.call_deadline is None or self.kill_reason is not None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._tmp_checked < TMP_CHECK_INTERVAL_S:
                return
            self._tmp_checked = now
        if directory_bytes(self.tmp_dir) > TMP_LIMIT_MB * 2**20:
            self.kill(KillReason.TMP_FULL)

    def _remove_tmp_dir(self) -> None:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _release(self) -> None:
        """Let the process go: its descriptors are closed now (its exit, reported later or never, finds
        nothing left to close); a later signal goes by pid, checked against its start time."""
        self._close_pidfd()
        self._close_socket()

    def _close_pidfd(self) -> None:
        with self._lock:
            pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            try:
                os.close(pidfd)
            except OSError:
                pass

    def _enter_socket(self) -> None:
        """A thread starts using the socket; raises :class:`ChannelClosed` if the pipeline was ended."""
        with self._lock:
            if self._sock_ended:
                raise ChannelClosed("the pipeline was ended")
            self._sock_users += 1

    def _leave_socket(self) -> None:
        """A thread is done with the socket: the last one out of a socket shut down closes it."""
        with self._lock:
            self._sock_users -= 1
            close = self._sock_ended and self._sock_users == 0
        if close:
            self._sock.close()

    def _close_socket(self) -> None:
        """Shut the connection down (a process the function forked may hold a copy of the socket: only a
        shutdown wakes a thread waiting on it here, and makes its next read find the end), then close the
        descriptor, now or when the last thread using it leaves."""
        with self._lock:
            if self._sock_ended:
                return
            self._sock_ended = True
            close = self._sock_users == 0
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if close:
            self._sock.close()
