"""Starting a pipeline: launch it, wait for its first report, and tell the pool how it went.

A :class:`Starter` runs each start in a thread it owns (joined by :meth:`Starter.close`); a start that fails
(the launcher raised, the init code raised, crashed, ran out of memory or past its time) is answered with the
error a waiting call gets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .._errors import ChannelClosed, LambdapoolError, PipelineCrashed
from .._model import EndpointSpec
from ._metrics import Counter, EndpointStats
from ._pipeline import KillReason, PipelineHandle, ending

#: ``launch(pool_id, label)`` starts a pipeline and returns its handle (before it reports ready).
Launcher = Callable[[int, str], PipelineHandle]


class Starter:
    """Starts the pipelines of one endpoint (see the module docstring). ``launched(pool_id, pipeline)``
    registers a launched pipeline (``False``: the pool is closed, the pipeline is killed); then exactly one
    of ``ready(pool_id, pipeline)`` and ``failed(pool_id, error)`` follows."""

    def __init__(
        self,
        spec: EndpointSpec,
        stats: EndpointStats,
        launch: Launcher,
        start_timeout_s: float,
        clock: Callable[[], float],
        *,
        launched: Callable[[int, PipelineHandle], bool],
        ready: Callable[[int, PipelineHandle], None],
        failed: Callable[[int, LambdapoolError], None],
    ):
        self.start_timeout_s = start_timeout_s
        self._spec = spec
        self._stats = stats
        self._launch = launch
        self._clock = clock
        self._launched = launched
        self._ready = ready
        self._failed = failed
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._memory_limit_bytes = spec.memory_mb * 2**20

    def start(self, pool_id: int, label: str) -> None:
        """Start pipeline ``pool_id`` (named ``label``) in a thread."""
        thread = threading.Thread(target=self._run, args=(pool_id, label), name=f"lambdapool-start-{label}")
        with self._lock:
            if self._closed:
                return
            self._threads.add(thread)
        thread.start()

    def close(self) -> None:
        """Join every start (the pool has killed their pipelines, which ends the waits)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def _run(self, pool_id: int, label: str) -> None:
        try:
            self._start(pool_id, label)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _start(self, pool_id: int, label: str) -> None:
        started = self._clock()
        try:
            pipeline = self._launch(pool_id, label)
        except Exception as exc:
            self._failed(pool_id, PipelineCrashed.not_started(exc))
            return
        if not self._launched(pool_id, pipeline):
            pipeline.kill(KillReason.SHUTDOWN)
            return
        error = self._await_ready(pipeline)
        if error is not None:
            pipeline.kill(pipeline.kill_reason or KillReason.FAILED_START)
            self._failed(pool_id, error)
            return
        pipeline.init_ms = max((self._clock() - started) * 1000, 0.001)
        self._ready(pool_id, pipeline)

    def _await_ready(self, pipeline: PipelineHandle) -> LambdapoolError | None:
        try:
            header = pipeline.wait_ready(self.start_timeout_s)
        except TimeoutError:
            pipeline.kill(KillReason.TIMEOUT)
            return self._ended(pipeline)
        except (ChannelClosed, OSError, ValueError):
            return self._ended(pipeline)
        if header.get("op") == "init_error":
            self._stats.count(Counter.CRASHES)
            body = header["error"]
            return PipelineCrashed(body["message"], body["detailedMessage"])
        if header.get("peakRssBytes", 0) > self._memory_limit_bytes:
            pipeline.kill(KillReason.OUT_OF_MEMORY)
            return self._ended(pipeline)
        return None

    def _ended(self, pipeline: PipelineHandle) -> LambdapoolError:
        error, counter = ending(pipeline, self._spec, self.start_timeout_s)
        if counter is not None:
            self._stats.count(counter)
        return error
