"""The emulator's handle on the fork server process (:mod:`lambdapool.emulator.pipelines._forkserver_process`).

:class:`ForkServer` starts the server, asks it for pipelines and hears of their exits; it supervises the
server: when it dies, the pipelines it had are reported dead and a new server is started (see
:mod:`lambdapool.emulator.pipelines._supervision`).
"""

from __future__ import annotations

import array
import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..._errors import ChannelClosed, ForkServerError
from ._config import PipelineConfig
from ._supervision import RestartBackoff, describe_returncode, restart_with_backoff
from ._wire import (
    FrameReader,
    encode_frame,
    recv_frame,
)

log = logging.getLogger("lambdapool.emulator")


@dataclasses.dataclass(eq=False)
class _Generation:
    """One fork server process, with its control socket, its unanswered spawn requests and its live pipelines."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    started: float  # time.monotonic()
    pending: dict[int, tuple[threading.Event, list[int]]] = dataclasses.field(default_factory=dict)
    children: set[int] = dataclasses.field(default_factory=set)


class ForkServer:
    """The emulator's handle on the fork server process. A context manager; thread-safe.

    ``on_exit(pid, status)`` is called (from a reader thread) whenever a pipeline ends with its ``waitpid``
    status. With ``restart`` (the default) the handle supervises the server: when it dies, every pipeline it
    had forked is reported ended (``status`` :data:`signal.SIGKILL`: ``PR_SET_PDEATHSIG`` kills them with it)
    and a new server is started with the same preloads, as ``backoff`` allows (see :class:`RestartBackoff`: a
    server that keeps dying is not restarted in a loop); :attr:`restarts` counts the restarts, and spawn
    requests made meanwhile wait for the new server.
    """

    def __init__(
        self,
        preload: Sequence[str] = (),
        on_exit: Callable[[int, int], None] | None = None,
        *,
        restart: bool = True,
        backoff: RestartBackoff | None = None,
        tmp_root: Path | None = None,
    ):
        self._preload = list(preload)
        self._tmp_root = tmp_root
        #: what the server took from its launch to its greeting, less its own set-up, in ms (measured at each
        #: start): a fresh interpreter's start and its imports of the preloaded libraries, what a pipeline
        #: forked from it skips
        self.startup_ms = 0.0
        self._on_exit = on_exit
        self._restart = restart
        self._cond = threading.Condition()
        self._next_token = 0
        self._current: _Generation | None = None
        self._readers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._gave_up = False
        self._backoff = backoff or RestartBackoff()
        self._start_timeout_s = 60.0
        self.restarts = 0

    def __enter__(self) -> ForkServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The running server's pid (``None`` while it is being restarted, or once stopped)."""
        current = self._current
        return current.process.pid if current is not None else None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until its preloading is done (at most ``timeout_s``, also the limit
        for every restart). Raises :class:`ForkServerError` if it does not start."""
        self._start_timeout_s = timeout_s
        self._install(self._launch(timeout_s))

    def spawn(self, config: PipelineConfig, timeout_s: float = 30.0) -> tuple[int, socket.socket]:
        """Fork a pipeline running ``config``; returns its pid and the emulator's end of its socket.

        A request that the server cannot answer because it died is sent again to its replacement.
        Raises :class:`ForkServerError` if no server answers within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        dead: _Generation | None = None
        while True:
            generation = self._wait_for_server(deadline, dead)
            pid_and_socket = self._spawn_on(generation, config, deadline)
            if pid_and_socket is not None:
                return pid_and_socket
            dead = generation  # it died under the request (or never answered): try its successor

    def stop_restarting(self) -> None:
        """Restart no server from now on, and fail the spawn requests waiting for one (the emulator is
        closing: its pools must not wait for a restart)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the control socket; the server kills its pipelines and exits (killed if it lingers).
        Ends the supervision: a server that dies from now on is not restarted."""
        self._stopping.set()
        with self._cond:
            current, self._current = self._current, None
            readers = list(self._readers)
            self._cond.notify_all()
        if current is not None:
            self._end(current, timeout_s)
        for reader in readers:
            if reader is not threading.current_thread():
                reader.join(timeout_s)

    # -- internals ------------------------------------------------------------------------------------

    def _launch(self, timeout_s: float) -> _Generation:
        """Start a server process and wait for its greeting; raises :class:`ForkServerError`."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        launched = time.monotonic()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lambdapool.emulator.pipelines._forkserver_process",
                    "--fd",
                    str(theirs.fileno()),
                    "--preload",
                    ",".join(self._preload),
                    *(["--tmp-root", str(self._tmp_root)] if self._tmp_root is not None else []),
                ],
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # a Ctrl-C in the terminal reaches the emulator only
            )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"the fork server did not start: {exc}") from exc
        finally:
            theirs.close()
        generation = _Generation(process, ours, time.monotonic())
        ours.settimeout(timeout_s)
        try:
            header, _ = recv_frame(ours)
        except (ChannelClosed, TimeoutError, OSError, ValueError) as exc:
            self._end(generation, 0.0)
            raise ForkServerError(f"the fork server did not start: {exc}") from exc
        if header.get("op") != "ready":
            self._end(generation, 0.0)
            raise ForkServerError(f"unexpected fork server greeting {header!r}")
        ours.settimeout(None)
        # what it took to start, less its own set-up (see _forkserver_process.serve): a fresh interpreter's start
        self.startup_ms = max(0.0, (time.monotonic() - launched) * 1000 - float(header.get("ownMs", 0.0)))
        return generation

    def _install(self, generation: _Generation, *, restart: bool = False) -> bool:
        """Make ``generation`` the server spawn requests go to (counted in :attr:`restarts` if it is a
        ``restart``), and start its reader; ``False`` (and the server ended) if the handle was stopped."""
        with self._cond:
            if not self._stopping.is_set():
                self._current = generation
                if restart:
                    self.restarts += 1
                reader = threading.Thread(
                    target=self._read, args=(generation,), name="lambdapool-forkserver", daemon=True
                )
                self._readers = [thread for thread in self._readers if thread.is_alive()] + [reader]
                reader.start()
                self._cond.notify_all()
                return True
        self._end(generation, 0.0)
        return False

    @staticmethod
    def _end(generation: _Generation, timeout_s: float) -> None:
        """Close ``generation``'s control socket (the server then exits) and reap it, killed after ``timeout_s``."""
        try:
            generation.control.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        generation.control.close()
        try:
            generation.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            generation.process.kill()
            generation.process.wait()

    def _wait_for_server(self, deadline: float, dead: _Generation | None) -> _Generation:
        """The running server (not ``dead``), waiting for a restart until ``deadline``."""
        with self._cond:
            while self._current is None or self._current is dead:
                remaining = deadline - time.monotonic()
                if self._stopping.is_set() or self._gave_up or not self._restart or remaining <= 0:
                    raise ForkServerError("the fork server is not running")
                self._cond.wait(remaining)
            return self._current

    def _spawn_on(
        self, generation: _Generation, config: PipelineConfig, deadline: float
    ) -> tuple[int, socket.socket] | None:
        """Send one spawn request to ``generation``; ``None`` if it died before answering.
        Raises :class:`ForkServerError` if it is alive but does not answer by ``deadline``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        event = threading.Event()
        result: list[int] = []
        frame_config = config.to_json()
        with self._cond:
            if self._current is not generation:  # it died since it was chosen: its reader is done
                ours.close()
                theirs.close()
                return None
            token = self._next_token
            self._next_token += 1
            generation.pending[token] = (event, result)
            try:
                generation.control.sendmsg(
                    [encode_frame({"op": "spawn", "token": token, "config": frame_config})],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))],
                )
            except OSError:
                pass  # the server is gone: its reader wakes every request it left unanswered
            finally:
                theirs.close()
        answered = event.wait(max(0.0, deadline - time.monotonic()))
        if answered and result:
            return result[0], ours
        ours.close()
        with self._cond:
            generation.pending.pop(token, None)
            if answered or self._current is not generation:
                return None
        raise ForkServerError("the fork server did not answer a spawn request")

    def _read(self, generation: _Generation) -> None:
        """A server's reader thread: answers to spawn requests and pipeline exits until its socket closes;
        then, if the server died (rather than being stopped), its recovery."""
        reader = FrameReader(generation.control)
        try:
            while True:
                header, _ = reader.read()
                if header["op"] == "spawned":
                    with self._cond:
                        generation.children.add(header["pid"])
                        event, result = generation.pending.pop(header["token"], (None, []))
                    if event is not None:
                        result.append(header["pid"])
                        event.set()
                elif header["op"] == "exited":
                    with self._cond:
                        generation.children.discard(header["pid"])
                    self._report_exit(header["pid"], header["status"])
        except (ChannelClosed, OSError, ValueError):
            pass
        except Exception:  # a frame this reader does not understand: the server is of no use any more
            log.exception("reading the fork server's answers failed")
        finally:
            with self._cond:
                pending, generation.pending = generation.pending, {}
                lost, generation.children = generation.children, set()
                died = self._current is generation
                if died:
                    self._current = None
                self._cond.notify_all()
            for event, _ in pending.values():
                event.set()
        if died:
            self._recover(generation, sorted(lost))

    def _report_exit(self, pid: int, status: int) -> None:
        if self._on_exit is None:
            return
        try:
            self._on_exit(pid, status)
        except Exception:  # the reader must live on: the next spawn answers depend on it
            log.exception("reporting the end of pipeline %d failed", pid)

    def _recover(self, dead: _Generation, lost: list[int]) -> None:
        """``dead`` died by itself: report its pipelines ended, then start its replacement."""
        self._end(dead, 5.0)
        for pid in lost:  # killed with their server (PR_SET_PDEATHSIG): no one will report them otherwise
            self._report_exit(pid, signal.SIGKILL)
        if not self._restart:
            return
        self._backoff.died(time.monotonic() - dead.started)

        def attempt() -> str | None:
            replacement = self._launch(self._start_timeout_s)
            if not self._install(replacement, restart=True):
                return None
            return f"restarted it as pid {replacement.process.pid} (restart {self.restarts})"

        what = f"the fork server (pid {dead.process.pid}) {describe_returncode(dead.process.returncode)}"
        impact = "pipelines cannot start until the emulator is restarted"
        if not restart_with_backoff(log, what, self._backoff, self._stopping, attempt, impact):
            with self._cond:
                self._gave_up = True
                self._cond.notify_all()
