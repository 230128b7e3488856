"""Starting a pipeline: launch it, wait for its first report, and tell the pool how it went.

A :class:`Starter` runs each start in a thread it owns (joined by :meth:`Starter.close`); a start that fails
(the launcher raised, the init code raised, crashed, ran out of memory or past its time) is answered with the
error a waiting call gets.

Init is limited as Lambda limits it: "The Init phase is limited to 10 seconds. If all three tasks do not
complete within 10 seconds, Lambda retries the Init phase at the time of the first function invocation with
the configured function timeout" (AWS Lambda developer guide, the execution environment lifecycle). A start
whose init runs past ``init_limit_s`` is killed and started again, that second init bounded by the
endpoint's ``timeout_s``; the call that waits for it has its deadline counted from the re-run, so init and
call share ``timeout_s``, and init code runs twice, as it does on Lambda.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..._errors import ChannelClosed, LambdapoolError, PipelineCrashed, Timeout
from ..._model import EndpointSpec
from ._metrics import Counter, EndpointStats
from ._pipeline import KillReason, PipelineHandle, ending

log = logging.getLogger("lambdapool.starts")


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
        init_limit_s: float,
        clock: Callable[[], float],
        *,
        launched: Callable[[int, PipelineHandle], bool],
        ready: Callable[[int, PipelineHandle], None],
        failed: Callable[[int, LambdapoolError], None],
    ):
        self.init_limit_s = init_limit_s
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
        pipeline = self._launch_one(pool_id, label)
        if pipeline is None:
            return
        error = self._await_ready(pipeline, self.init_limit_s)
        if error is _INIT_OVER_LIMIT:  # Lambda runs init again, within the first call and its timeout
            pipeline.kill(KillReason.INIT_RERUN)
            self._stats.count(Counter.INIT_RERUNS)
            log.warning(
                "%s: app.py's init code ran past Lambda's %g s Init limit: it runs again within the first call, "
                "under timeout_s=%s",
                self._spec.where,
                self.init_limit_s,
                self._spec.timeout_s,
            )
            rerun_at = self._clock()
            pipeline = self._launch_one(pool_id, label)
            if pipeline is None:
                return
            pipeline.init_rerun_at = rerun_at
            error = self._await_ready(pipeline, float(self._spec.timeout_s), rerun=True)
        if error is not None:
            pipeline.kill(pipeline.kill_reason or KillReason.FAILED_START)
            self._failed(pool_id, error)
            return
        pipeline.init_ms = max((self._clock() - started) * 1000, 0.001)
        self._ready(pool_id, pipeline)

    def _launch_one(self, pool_id: int, label: str) -> PipelineHandle | None:
        """Launch and register a pipeline; ``None`` if that failed (answered) or the pool is closed."""
        try:
            pipeline = self._launch(pool_id, label)
        except Exception as exc:
            self._failed(pool_id, PipelineCrashed.not_started(exc))
            return None
        if not self._launched(pool_id, pipeline):
            pipeline.kill(KillReason.SHUTDOWN)
            return None
        return pipeline

    def _await_ready(self, pipeline: PipelineHandle, limit_s: float, *, rerun: bool = False) -> LambdapoolError | None:
        """``None`` once the pipeline reports ready within ``limit_s``; otherwise what the waiting call is
        answered (:data:`_INIT_OVER_LIMIT` when a first init runs past the limit: the caller runs it again)."""
        try:
            header = pipeline.wait_ready(limit_s)
        except TimeoutError:
            if not rerun:
                return _INIT_OVER_LIMIT
            pipeline.kill(KillReason.TIMEOUT)
            self._stats.count(Counter.TIMEOUTS)
            return Timeout.init_rerun(self._spec.where, self._spec.timeout_s, self.init_limit_s)
        except (ChannelClosed, OSError, ValueError):
            return self._ended(pipeline, limit_s)
        if header.get("op") == "init_error":
            self._stats.count(Counter.CRASHES)
            body = header["error"]
            return PipelineCrashed(body["message"], body["detailedMessage"])
        if header.get("peakRssBytes", 0) > self._memory_limit_bytes:
            pipeline.kill(KillReason.OUT_OF_MEMORY)
            return self._ended(pipeline, limit_s)
        return None

    def _ended(self, pipeline: PipelineHandle, limit_s: float) -> LambdapoolError:
        error, counter = ending(pipeline, self._spec, limit_s)
        if counter is not None:
            self._stats.count(counter)
        return error


#: What :meth:`Starter._await_ready` answers for a first init past the limit (never given to a call).
_INIT_OVER_LIMIT = Timeout("init ran past its limit")
