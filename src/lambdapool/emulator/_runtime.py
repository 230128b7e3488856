"""One endpoint's pool of pipelines: the thin shell that carries out :class:`PoolCore`'s decisions.

Every decision (start, queue, reject, retire, replace) is taken by :class:`~lambdapool.emulator._pool.PoolCore`;
:class:`EndpointRuntime` carries them out with pipelines (:mod:`lambdapool.emulator._pipeline`) and wakes the
threads waiting on them. Its clock is passed in and used for every time it measures.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .._errors import (
    Cancelled,
    ChannelClosed,
    LambdapoolError,
    OutOfMemory,
    PipelineCrashed,
    QueueFull,
    QueueTimeout,
    ResponseSizeTooLarge,
    error_from_body,
)
from .._model import SYNC_PAYLOAD_LIMIT_BYTES, EndpointSpec
from ._metrics import Counter, EndpointStats, endpoint_status
from ._pipeline import KillReason, PipelineHandle, ending
from ._pool import Action, Dispatch, Fail, PipelineState, PoolCore, PoolSnapshot, Reject, RejectReason, Retire, Start

#: ``launch(pool_id, label)`` starts a pipeline and returns its handle (before it reports ready).
Launcher = Callable[[int, str], PipelineHandle]
#: A pipeline that never reports is given up after ``max(this, timeout_s)`` seconds.
MIN_START_TIMEOUT_S = 10.0


class Ticket:
    """A call's place in the pool, from :meth:`EndpointRuntime.enter` to :meth:`EndpointRuntime.complete`:
    how the waiting thread learns which pipeline serves it."""

    __slots__ = (
        "arrived",
        "cancelled",
        "cold",
        "error",
        "event",
        "lambda_event",
        "may_queue",
        "on_start",
        "payload",
        "pipeline_id",
        "request_id",
    )

    def __init__(
        self,
        request_id: str,
        arrived: float,
        on_start: Callable[[], object] | None = None,
        lambda_event: bool = False,
        payload: bytes = b"{}",
        may_queue: bool = True,
    ):
        self.request_id = request_id
        self.lambda_event = lambda_event
        self.payload = payload
        self.may_queue = may_queue
        self.arrived = arrived
        self.event = threading.Event()
        self.pipeline_id: int | None = None
        self.cold = False
        self.cancelled = False
        self.error: LambdapoolError | None = None
        self.on_start = on_start


@dataclasses.dataclass
class CallResult:
    """A successful call: the result's JSON bytes and the envelope's ``timing`` and ``apiContext``."""

    result: bytes
    timing: dict[str, float]
    api_context: dict[str, Any]

    def envelope(self) -> bytes:
        """The run route's 200 body, with the result spliced in without re-encoding it."""
        timing = json.dumps(self.timing, separators=(",", ":")).encode()
        api_context = json.dumps(self.api_context, separators=(",", ":")).encode()
        return b"".join((b'{"response":', self.result, b',"timing":', timing, b',"apiContext":', api_context, b"}"))


class EndpointRuntime:
    """One endpoint's pool of pipelines. Thread-safe; callers use :meth:`call` from their own threads.

    ``launch`` starts a pipeline (see :data:`Launcher`); the runtime waits for it to report ``ready`` (at most
    ``start_timeout_s``). ``clock`` is a monotonic clock in seconds. Pipelines are started from threads the
    runtime owns and joins in :meth:`close`.
    """

    def __init__(
        self,
        spec: EndpointSpec,
        launch: Launcher,
        *,
        start_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.spec = spec
        self.stats = EndpointStats()
        self._launch = launch
        self._start_timeout_s = (
            start_timeout_s if start_timeout_s is not None else max(MIN_START_TIMEOUT_S, float(spec.timeout_s))
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified whenever the pool may have room
        self._core = PoolCore(spec.pool)
        self._tickets: dict[str, Ticket] = {}
        self._pipelines: dict[int, PipelineHandle] = {}
        self._start_errors: dict[int, LambdapoolError] = {}
        self._starters: set[threading.Thread] = set()
        self._closed = False
        self._memory_limit_bytes = spec.memory_mb * 2**20
        self._id_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)

    # -- public ---------------------------------------------------------------------------------------

    def load(self) -> None:
        """Start the ``floor`` pipelines (in the background)."""
        with self._lock:
            actions = self._core.load()
        self._execute(actions)

    def call(
        self,
        arguments: dict[str, Any],
        payload: bytes | None = None,
        *,
        may_queue: bool = True,
        request_id: str | None = None,
        on_start: Callable[[], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
        lambda_event: bool = False,
    ) -> CallResult:
        """Run one call with bound ``arguments`` through the pool and wait for it; raises a
        :class:`LambdapoolError`.

        ``payload`` is ``arguments`` as JSON, when the caller already has it. With ``may_queue`` false a call
        that finds ``ceil`` pipelines busy is rejected at once (:class:`QueueFull`), as Lambda throttles.
        ``request_id`` names the call for :meth:`cancel`; ``on_start`` is called once it has a pipeline;
        ``cancelled`` is asked once the call is registered, so that a cancel that came before it is not lost.
        ``lambda_event`` marks an event of the Lambda Invoke API (the only calls that may carry a task).
        """
        ticket = self.enter(
            arguments,
            payload,
            may_queue=may_queue,
            request_id=request_id,
            on_start=on_start,
            cancelled=cancelled,
            lambda_event=lambda_event,
        )
        return self.complete(ticket)

    def enter(
        self,
        arguments: dict[str, Any],
        payload: bytes | None = None,
        *,
        may_queue: bool = True,
        request_id: str | None = None,
        on_start: Callable[[], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
        lambda_event: bool = False,
    ) -> Ticket:
        """The first half of :meth:`call`, which never waits: the call takes its place in the pool (a pipeline,
        one starting for it, or the queue), in the order calls enter. Raises what the pool answers at once
        (with ``may_queue`` false, :class:`QueueFull`). :meth:`complete` must follow."""
        request_id = request_id or f"{self._id_prefix}-{next(self._request_numbers)}"
        data = payload if payload is not None else json.dumps(arguments).encode()
        ticket = Ticket(request_id, self._clock(), on_start, lambda_event, data, may_queue)
        self.stats.count(Counter.CALLS)
        try:
            with self._lock:
                if self._closed:
                    raise PipelineCrashed.shutting_down()
                self._tickets[request_id] = ticket
                if cancelled is not None and cancelled():
                    raise Cancelled.before_start()
                actions = self._core.arrive(request_id, ticket.arrived, may_queue)
            self._execute(actions)
            if not may_queue and ticket.error is not None:
                raise ticket.error
        except LambdapoolError:
            self.stats.count(Counter.FAILED)
            with self._lock:
                self._tickets.pop(request_id, None)
            raise
        return ticket

    def complete(self, ticket: Ticket) -> CallResult:
        """The second half of :meth:`call`: wait for the call's pipeline, run it, and answer."""
        try:
            while True:
                self._wait_for_pipeline(ticket)
                if ticket.error is not None:
                    raise ticket.error
                outcome = self._run_on(ticket, ticket.payload)
                if outcome is not None:
                    result = outcome
                    break
                self._arrive_again(ticket, ticket.may_queue)
        except LambdapoolError:
            self.stats.count(Counter.FAILED)
            raise
        finally:
            with self._lock:
                self._tickets.pop(ticket.request_id, None)
        self.stats.succeeded(result.timing["total"])
        return result

    def nudge(self) -> None:
        """Wake the threads in :meth:`wait_for_room` (they look again)."""
        with self._room:
            self._room.notify_all()

    def wait_for_room(self, timeout_s: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait until a call would get a pipeline without queueing (see :meth:`PoolCore.has_room`), the pool
        is closed (a call then fails at once) or ``stop()`` (asked when :meth:`nudge` wakes the waiters), at
        most ``timeout_s``; returns whether one of those happened."""
        with self._room:
            return self._room.wait_for(lambda: self._closed or stop() or self._core.has_room(), timeout_s)

    def cancel(self, request_id: str) -> bool:
        """Cancel the call ``request_id``: a queued one leaves the queue, a running one has its pipeline killed
        (and replaced). The call then raises :class:`Cancelled`. Returns whether the call was found."""
        with self._lock:
            ticket = self._tickets.get(request_id)
            if ticket is None:
                return False
            ticket.cancelled = True
            withdrawn = self._core.withdraw(request_id)
            pipeline = self._pipelines.get(ticket.pipeline_id) if ticket.pipeline_id is not None else None
        if withdrawn:
            ticket.error = Cancelled.queued()
            ticket.event.set()
        elif pipeline is not None:
            pipeline.kill(KillReason.CANCELLED)
        return True

    def occupancy(self) -> PoolSnapshot:
        """How many pipelines are starting, idle and busy, and how many requests wait."""
        with self._lock:
            return self._core.snapshot()

    def pipelines(self) -> list[tuple[PipelineHandle, PipelineState | None]]:
        """Every pipeline with its state in the pool (``None`` once the pool has let it go)."""
        with self._lock:
            return [(pipeline, self._core.state_of(pool_id)) for pool_id, pipeline in self._pipelines.items()]

    def status(self) -> dict[str, Any]:
        """This endpoint's part of ``/__lambdapool__/status`` (see :func:`~._metrics.endpoint_status`)."""
        return endpoint_status(self)

    def supervise(self) -> None:
        """Kill every running pipeline whose call is past its deadline or whose resident memory is over
        ``memory_mb``. Idle pipelines are skipped: they can neither grow nor run late. Called periodically
        by the emulator's supervisor thread."""
        now = self._clock()
        with self._lock:
            running = [
                pipeline
                for pool_id, pipeline in self._pipelines.items()
                if self._core.state_of(pool_id) is not PipelineState.IDLE and pipeline.kill_reason is None
            ]
        for pipeline in running:
            deadline = pipeline.call_deadline
            if deadline is not None and now > deadline:
                pipeline.kill(KillReason.TIMEOUT)
                continue
            rss = pipeline.rss_bytes()
            if rss is not None and rss > self._memory_limit_bytes:
                pipeline.kill(KillReason.OUT_OF_MEMORY)

    def on_exit(self, pid: int, status: int) -> bool:
        """The fork server reports that ``pid`` ended; returns whether it was one of this endpoint's."""
        with self._lock:
            found = next(((i, p) for i, p in self._pipelines.items() if p.pid == pid), None)
            if found is None:
                return False
            pool_id, pipeline = found
            died_idle = pipeline.kill_reason is None and self._core.state_of(pool_id) is PipelineState.IDLE
        pipeline.mark_exited(status)
        if died_idle:  # killed from outside while idle: forget it so that no call is sent to it
            self._finish(pool_id, pipeline, healthy=False)
        return True

    def close(self) -> None:
        """Kill every pipeline, fail every waiting request and join the threads starting pipelines."""
        with self._lock:
            self._closed = True
            self._room.notify_all()
            pipelines = list(self._pipelines.values())
            tickets = list(self._tickets.values())
        for pipeline in pipelines:
            pipeline.kill(KillReason.SHUTDOWN)
        for ticket in tickets:
            if not ticket.event.is_set():
                ticket.error = PipelineCrashed.shutting_down()
                ticket.event.set()
        with self._lock:
            starters = list(self._starters)
        for starter in starters:
            starter.join()

    # -- internals ------------------------------------------------------------------------------------

    def _wait_for_pipeline(self, ticket: Ticket) -> None:
        while not ticket.event.is_set():
            with self._lock:
                deadline = self._core.deadline_of(ticket.request_id)
            if deadline is None:  # waiting for a pipeline to start: that start always ends, either way
                ticket.event.wait()
                continue
            if not ticket.event.wait(max(0.0, deadline - self._clock())):
                with self._lock:
                    actions = self._core.expire(self._clock())
                self._execute(actions)

    def _arrive_again(self, ticket: Ticket, may_queue: bool) -> None:
        """The call's pipeline had died before the call reached it: the call goes back to the pool, as if it
        had just arrived (it never ran, so it is not failed)."""
        with self._lock:
            if self._closed:
                raise PipelineCrashed.shutting_down()
            ticket.event.clear()
            ticket.pipeline_id, ticket.cold = None, False
            actions = self._core.arrive(ticket.request_id, self._clock(), may_queue)
        self._execute(actions)

    def _run_on(self, ticket: Ticket, payload: bytes) -> CallResult | None:
        """Run the call on the pipeline it was given; ``None`` if that pipeline had already died."""
        assert ticket.pipeline_id is not None
        pool_id = ticket.pipeline_id
        with self._lock:
            pipeline = self._pipelines[pool_id]
        if not pipeline.alive():
            with self._lock:
                ticket.pipeline_id = None
            self._finish(pool_id, pipeline, healthy=False)
            return None
        dispatched = self._clock()
        cold_ms = pipeline.init_ms if ticket.cold else 0.0
        header = {"op": "call", "requestId": ticket.request_id, "timeoutS": self.spec.timeout_s, "cold": ticket.cold}
        if ticket.lambda_event:
            header["lambdaEvent"] = True
        if ticket.cold:
            self.stats.count(Counter.COLD_STARTS)
        healthy = True  # until the call is sent, the pipeline is untouched
        try:
            if ticket.cancelled:  # cancelled while its pipeline was starting: give the pipeline back unused
                raise Cancelled.before_start()
            if ticket.on_start is not None:
                ticket.on_start()
            healthy = False
            try:
                reply, result = pipeline.call(header, payload, self._clock() + self.spec.timeout_s)
            except (ChannelClosed, OSError, ValueError):
                raise self._death_error(pipeline) from None
            if reply.get("peakRssBytes", 0) > self._memory_limit_bytes:
                pipeline.kill(KillReason.OUT_OF_MEMORY)
                raise self._death_error(pipeline)
            if reply["op"] == "result" and len(result) > SYNC_PAYLOAD_LIMIT_BYTES:  # what Lambda refuses
                healthy = True
                raise ResponseSizeTooLarge.over(len(result), SYNC_PAYLOAD_LIMIT_BYTES)
            if reply["op"] == "error":
                error = error_from_body(reply["error"], reply.get("retryAfterS"))
                if isinstance(error, OutOfMemory):  # MemoryError in the function: the pipeline exits
                    self.stats.count(Counter.OUT_OF_MEMORY)
                    raise error
                healthy = True
                raise error
            healthy = True
        finally:
            with self._lock:
                ticket.pipeline_id = None  # the pipeline is not this call's anymore: a late cancel spares it
            self._finish(pool_id, pipeline, healthy)
        finished = self._clock()
        waited_ms = max(0.0, (dispatched - ticket.arrived) * 1000 - cold_ms)
        return CallResult(
            result=result,
            timing={
                "wait": round(waited_ms, 3),
                "coldStart": round(cold_ms, 3),
                "execution": round(float(reply.get("executionMs", (finished - dispatched) * 1000)), 3),
                "total": round((finished - ticket.arrived) * 1000, 3),
            },
            api_context={
                "serviceId": self.spec.service_id,
                "endpointId": self.spec.endpoint_id,
                "pipelineId": pipeline.label,
                "coldStart": ticket.cold,
            },
        )

    def _death_error(self, pipeline: PipelineHandle, *, starting: bool = False) -> LambdapoolError:
        """What to answer for a call whose pipeline died under it (or was killed for it), or for a start;
        counted."""
        error, counter = ending(pipeline, self.spec, self._start_timeout_s if starting else None)
        if counter is not None:
            self.stats.count(counter)
        return error

    def _finish(self, pool_id: int, pipeline: PipelineHandle, healthy: bool) -> None:
        with self._lock:
            if self._core.state_of(pool_id) is None:
                return
            if healthy and pipeline.kill_reason is None:
                actions = self._core.done(pool_id, self._clock())
            else:
                self._pipelines.pop(pool_id, None)
                actions = self._core.lost(pool_id, self._clock())
        if not healthy:
            pipeline.kill(pipeline.kill_reason or KillReason.CRASHED)
        self._execute(actions)

    def _execute(self, actions: list[Action]) -> None:
        self._carry_out(actions)
        with self._room:
            self._room.notify_all()

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Start):
                self._start_in_background(action.pipeline_id)
            elif isinstance(action, Dispatch):
                ticket = self._tickets.get(str(action.request_id))
                if ticket is None:  # its caller is gone (shutdown): give the pipeline back
                    with self._lock:
                        actions_after = self._core.done(action.pipeline_id, self._clock())
                    self._execute(actions_after)
                    continue
                ticket.pipeline_id = action.pipeline_id
                ticket.cold = action.cold
                ticket.event.set()
            elif isinstance(action, Reject):
                self._reject(action)
            elif isinstance(action, Fail):
                error = self._start_errors.pop(action.pipeline_id, None)
                ticket = self._tickets.get(str(action.request_id))
                if ticket is not None:
                    ticket.error = error or PipelineCrashed.not_started()
                    ticket.event.set()
            elif isinstance(action, Retire):
                with self._lock:
                    pipeline = self._pipelines.pop(action.pipeline_id, None)
                if pipeline is not None:
                    pipeline.retire()

    def _reject(self, action: Reject) -> None:
        ticket = self._tickets.get(str(action.request_id))
        if ticket is None:
            return
        retry_after_s = self._retry_after_s()
        pool = self.spec.pool
        if action.reason is RejectReason.QUEUE_FULL:
            self.stats.count(Counter.QUEUE_FULL)
            ticket.error = QueueFull.pool_busy(self.spec.where, pool.ceil, pool.queue, retry_after_s)
        else:
            self.stats.count(Counter.QUEUE_TIMEOUT)
            ticket.error = QueueTimeout.waited(self.spec.where, pool.timeout_ms, retry_after_s)
        ticket.event.set()

    def _retry_after_s(self) -> int:
        """A hint for throttled callers: the queue's expected drain time, at least one second."""
        p50_ms = self.stats.percentiles()["p50"] or 0.0
        with self._lock:
            waiting = self._core.snapshot().queued + 1
        return max(1, math.ceil(p50_ms / 1000 * waiting / self.spec.pool.ceil))

    def _start_in_background(self, pool_id: int) -> None:
        with self._lock:
            if self._closed:
                return
            starter = threading.Thread(
                target=self._start_pipeline, args=(pool_id,), name=f"lambdapool-start-{self._label(pool_id)}"
            )
            self._starters.add(starter)
        starter.start()

    def _label(self, pool_id: int) -> str:
        """A pipeline's name in the envelope and the status: ``{service}-{endpoint}-{n}``."""
        return f"{self.spec.lambda_name}-{pool_id}"

    def _start_pipeline(self, pool_id: int) -> None:
        try:
            self._start(pool_id)
        finally:
            with self._lock:
                self._starters.discard(threading.current_thread())

    def _start(self, pool_id: int) -> None:
        started = self._clock()
        try:
            pipeline = self._launch(pool_id, self._label(pool_id))
        except Exception as exc:
            self._start_failed(pool_id, PipelineCrashed.not_started(exc))
            return
        with self._lock:
            if self._closed:
                pipeline.kill(KillReason.SHUTDOWN)
                return
            self._pipelines[pool_id] = pipeline
        error = self._await_ready(pipeline)
        if error is not None:
            with self._lock:
                self._pipelines.pop(pool_id, None)
            pipeline.kill(pipeline.kill_reason or KillReason.FAILED_START)
            self._start_failed(pool_id, error)
            return
        pipeline.init_ms = max((self._clock() - started) * 1000, 0.001)
        with self._lock:
            actions = self._core.ready(pool_id, self._clock())
        self._execute(actions)

    def _await_ready(self, pipeline: PipelineHandle) -> LambdapoolError | None:
        try:
            header = pipeline.wait_ready(self._start_timeout_s)
        except TimeoutError:
            pipeline.kill(KillReason.TIMEOUT)
            return self._death_error(pipeline, starting=True)
        except (ChannelClosed, OSError, ValueError):
            return self._death_error(pipeline, starting=True)
        if header.get("op") == "init_error":
            self.stats.count(Counter.CRASHES)
            body = header["error"]
            return PipelineCrashed(body["message"], body["detailedMessage"])
        if header.get("peakRssBytes", 0) > self._memory_limit_bytes:
            pipeline.kill(KillReason.OUT_OF_MEMORY)
            return self._death_error(pipeline, starting=True)
        return None

    def _start_failed(self, pool_id: int, error: LambdapoolError) -> None:
        with self._lock:
            self._start_errors[pool_id] = error
            actions = self._core.start_failed(pool_id, self._clock())
        self._execute(actions)
