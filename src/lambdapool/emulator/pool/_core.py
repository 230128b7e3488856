"""Pool decisions: which pipeline serves a request, when to start, queue, reject or retire.

A pure state machine over a clock that is passed in: no processes, threads or sockets. Every event
(:meth:`PoolCore.arrive`, :meth:`~PoolCore.ready`, :meth:`~PoolCore.done`, ...) returns the actions the
process layer must carry out. The rules are Dataiku's pool semantics:

- ``floor`` pipelines are started when the endpoint loads;
- a request is served by a free pipeline, the most recently used first;
- else a new pipeline is started for it while fewer than ``ceil`` exist (the request waits for it: a cold
  start);
- else it waits in a strictly FIFO queue of at most ``queue`` requests, for at most ``timeout_ms``;
  otherwise it is rejected (``QueueFull``; ``QueueTimeout`` once its wait runs out);
- once no request is pending, pipelines above ``cruise`` are retired, the longest idle first, each once it
  has been idle for ``cruise_grace_s`` (the burst is over: a steady load whose requests leave the pool idle
  for a moment between them keeps its pipelines, instead of retiring and cold-starting them again and
  again); a pool that scales to zero (``cruise`` 0) keeps the pipeline it used last for ``keep_warm_s``, as
  Lambda keeps an execution environment warm a while after its last call;
- a pipeline that dies is replaced while requests wait or fewer than ``cruise`` remain.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Hashable

from ..._model import Pool

RequestId = Hashable


class PipelineState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"


class RejectReason(enum.Enum):
    QUEUE_FULL = "QueueFull"
    QUEUE_TIMEOUT = "QueueTimeout"


@dataclasses.dataclass(frozen=True)
class Start:
    """Start a pipeline process with this id."""

    pipeline_id: int


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """Run ``request_id`` on ``pipeline_id``. ``cold`` is true when the request waited for the pipeline to start."""

    request_id: RequestId
    pipeline_id: int
    cold: bool


@dataclasses.dataclass(frozen=True)
class Reject:
    """Answer ``request_id`` with a 429 for ``reason``."""

    request_id: RequestId
    reason: RejectReason


@dataclasses.dataclass(frozen=True)
class Fail:
    """``request_id`` waited for ``pipeline_id``, which failed to start: answer with that failure."""

    request_id: RequestId
    pipeline_id: int


@dataclasses.dataclass(frozen=True)
class Retire:
    """Stop the idle pipeline ``pipeline_id``."""

    pipeline_id: int


Action = Start | Dispatch | Reject | Fail | Retire


@dataclasses.dataclass
class _Pipeline:
    state: PipelineState
    bound: RequestId | None = None  # the request waiting for this pipeline to start
    for_queue: bool = False  # started because requests were queued
    idle_since: float = 0.0


@dataclasses.dataclass(frozen=True)
class PoolSnapshot:
    starting: int
    idle: int
    busy: int
    queued: int


class PoolCore:
    """The pool's state and decisions for one endpoint. Not thread-safe: the caller holds a lock.

    Times are seconds from any monotonic clock, passed in as ``now``.
    """

    def __init__(self, pool: Pool, keep_warm_s: float = 0.0, cruise_grace_s: float = 0.0):
        self.pool = pool
        self.keep_warm_s = keep_warm_s
        self.cruise_grace_s = cruise_grace_s
        self._pipelines: dict[int, _Pipeline] = {}
        self._idle: list[int] = []  # a stack: the most recently used idle pipeline is last
        self._queue: deque[tuple[RequestId, float]] = deque()  # (request, deadline)
        self._next_id = 1

    # -- queries --------------------------------------------------------------------------------------

    def snapshot(self) -> PoolSnapshot:
        states = [p.state for p in self._pipelines.values()]
        return PoolSnapshot(
            starting=states.count(PipelineState.STARTING),
            idle=states.count(PipelineState.IDLE),
            busy=states.count(PipelineState.BUSY),
            queued=len(self._queue),
        )

    def state_of(self, pipeline_id: int) -> PipelineState | None:
        pipeline = self._pipelines.get(pipeline_id)
        return pipeline.state if pipeline is not None else None

    def queued_requests(self) -> list[RequestId]:
        return [request for request, _ in self._queue]

    def has_room(self) -> bool:
        """Whether a request arriving now would get a pipeline without queueing: one is idle, one is starting
        for nobody, or another may be started."""
        return (
            bool(self._idle)
            or len(self._pipelines) < self.pool.ceil
            or any(p.state is PipelineState.STARTING and p.bound is None for p in self._pipelines.values())
        )

    def deadline_of(self, request_id: RequestId) -> float | None:
        """When ``request_id`` times out in the queue, or ``None`` if it is not queued."""
        return next((deadline for request, deadline in self._queue if request == request_id), None)

    # -- events ---------------------------------------------------------------------------------------

    def load(self) -> list[Action]:
        """The endpoint loads: start ``floor`` pipelines."""
        return [self._new_pipeline(None) for _ in range(self.pool.floor)]

    def arrive(self, request_id: RequestId, now: float, may_queue: bool = True) -> list[Action]:
        """A request arrives. With ``may_queue`` false it is rejected rather than queued (Lambda's
        synchronous invocations are throttled, never queued)."""
        if self._idle:
            pipeline_id = self._idle.pop()
            self._pipelines[pipeline_id].state = PipelineState.BUSY
            return [Dispatch(request_id, pipeline_id, cold=False)]
        for pipeline in self._pipelines.values():
            if pipeline.state is PipelineState.STARTING and pipeline.bound is None:
                pipeline.bound = request_id
                return []
        if len(self._pipelines) < self.pool.ceil:
            return [self._new_pipeline(request_id)]
        if may_queue and len(self._queue) < self.pool.queue:
            self._queue.append((request_id, now + self.pool.timeout_ms / 1000))
            return []
        return [Reject(request_id, RejectReason.QUEUE_FULL)]

    def ready(self, pipeline_id: int, now: float) -> list[Action]:
        """A pipeline finished starting (its init code ran)."""
        pipeline = self._pipelines[pipeline_id]
        assert pipeline.state is PipelineState.STARTING, pipeline
        actions = self.expire(now)
        request = pipeline.bound
        pipeline.bound = None
        if request is None and self._queue:
            request = self._queue.popleft()[0]
        if request is not None:
            pipeline.state = PipelineState.BUSY
            actions.append(Dispatch(request, pipeline_id, cold=True))
            return actions
        self._make_idle(pipeline_id, now)
        return actions + self._retire_excess(now)

    def start_failed(self, pipeline_id: int, now: float) -> list[Action]:
        """A pipeline could not start (init code raised, crashed or hung). It is gone.

        The request it was started for fails with it: the one bound to it or, for a start made for the
        queue, the queue's head. No replacement is started for ``floor`` (a broken app would restart
        forever); each remaining queued request gets one new attempt, so each sees the failure once.
        """
        pipeline = self._pipelines.pop(pipeline_id)
        actions = self.expire(now)
        if pipeline.bound is not None:
            actions.append(Fail(pipeline.bound, pipeline_id))
        elif pipeline.for_queue and self._queue:
            actions.append(Fail(self._queue.popleft()[0], pipeline_id))
        if self._queue and len(self._pipelines) < self.pool.ceil:
            actions.append(self._new_pipeline(None, for_queue=True))
        return actions

    def done(self, pipeline_id: int, now: float) -> list[Action]:
        """A pipeline finished a call and is healthy."""
        pipeline = self._pipelines[pipeline_id]
        assert pipeline.state is PipelineState.BUSY, pipeline
        actions = self.expire(now)
        if self._queue:
            request = self._queue.popleft()[0]
            actions.append(Dispatch(request, pipeline_id, cold=False))
            return actions
        self._make_idle(pipeline_id, now)
        return actions + self._retire_excess(now)

    def lost(self, pipeline_id: int, now: float) -> list[Action]:
        """A started pipeline died (crashed, timed out, ran out of memory, or was killed while idle).

        It is replaced while requests wait or fewer than ``cruise`` pipelines remain.
        """
        pipeline = self._pipelines.pop(pipeline_id)
        if pipeline.state is PipelineState.IDLE:
            self._idle.remove(pipeline_id)
        actions = self.expire(now)
        if (self._queue or len(self._pipelines) < self.pool.cruise) and len(self._pipelines) < self.pool.ceil:
            actions.append(self._new_pipeline(None, for_queue=bool(self._queue)))
        return actions + self._retire_excess(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: pipelines above ``cruise`` idle for ``cruise_grace_s`` are retired, and a scale-to-zero
        pool's warm pipeline once idle for ``keep_warm_s``."""
        timed = self.cruise_grace_s > 0 or (self.pool.cruise == 0 and self.keep_warm_s > 0)
        return self._retire_excess(now) if timed and len(self._pipelines) > self.pool.cruise else []

    def expire(self, now: float) -> list[Action]:
        """Reject queued requests whose ``timeout_ms`` has run out."""
        actions: list[Action] = []
        while self._queue and self._queue[0][1] <= now:
            actions.append(Reject(self._queue.popleft()[0], RejectReason.QUEUE_TIMEOUT))
        return actions

    def withdraw(self, request_id: RequestId) -> bool:
        """Take a queued request out of the queue (it was cancelled); returns whether it was queued."""
        for index, (request, _) in enumerate(self._queue):
            if request == request_id:
                del self._queue[index]
                return True
        return False

    # -- internals ------------------------------------------------------------------------------------

    def _new_pipeline(self, bound: RequestId | None, for_queue: bool = False) -> Start:
        pipeline_id = self._next_id
        self._next_id += 1
        self._pipelines[pipeline_id] = _Pipeline(PipelineState.STARTING, bound=bound, for_queue=for_queue)
        return Start(pipeline_id)

    def _make_idle(self, pipeline_id: int, now: float) -> None:
        pipeline = self._pipelines[pipeline_id]
        pipeline.state = PipelineState.IDLE
        pipeline.idle_since = now
        self._idle.append(pipeline_id)

    def _pending(self) -> bool:
        return bool(self._queue) or any(
            p.state is PipelineState.BUSY or p.bound is not None for p in self._pipelines.values()
        )

    def _retire_excess(self, now: float) -> list[Action]:
        if self._pending():
            return []
        kept = self.pool.cruise
        if kept == 0 and self._idle and now - self._pipelines[self._idle[-1]].idle_since < self.keep_warm_s:
            kept = 1  # scale to zero, but the environment used last stays warm a while, as on Lambda
        excess = len(self._pipelines) - kept
        actions: list[Action] = []
        while excess > 0 and self._idle:
            pipeline_id = self._idle[0]  # the longest idle
            if now - self._pipelines[pipeline_id].idle_since < self.cruise_grace_s:
                break  # not idle for long enough yet (tick() looks again)
            self._idle.pop(0)
            del self._pipelines[pipeline_id]
            actions.append(Retire(pipeline_id))
            excess -= 1
        return actions
