"""One endpoint's pool of pipelines: the thin shell that carries out :class:`PoolCore`'s decisions.

Every decision (start, queue, reject, retire, replace) is taken by :class:`~lambdapool.emulator.pool._core.PoolCore`;
:class:`EndpointRuntime` carries them out with pipelines (:mod:`lambdapool.emulator.pool._pipeline`) and wakes the
threads waiting on them. Its clock is passed in and used for every time it measures.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..._errors import (
    Cancelled,
    LambdapoolError,
    PipelineCrashed,
)
from ..._gateway import GatewayTimeout
from ..._limits import INIT_LIMIT_S
from ..._model import EndpointSpec
from ._calls import CallResult, Superseded, Ticket, rejection
from ._core import Action, Dispatch, Fail, PipelineState, PoolCore, PoolSnapshot, Reject, RejectReason, Retire, Start
from ._exchange import Exchange, NotDelivered, StillRunning
from ._metrics import Counter, EndpointStats, endpoint_status
from ._pipeline import KillReason, PipelineHandle
from ._starts import Launcher, Starter

log = logging.getLogger("lambdapool.runtime")


class EndpointRuntime:
    """One endpoint's pool of pipelines. Thread-safe; callers use :meth:`call` from their own threads.

    ``launch`` starts a pipeline (see :data:`~lambdapool.emulator.pool._starts.Launcher`); the runtime's
    :class:`~lambdapool.emulator.pool._starts.Starter` waits for it to report ``ready`` (init is limited to
    ``init_limit_s``, then run again within the first call, as Lambda does), from threads joined in
    :meth:`close`. ``clock`` is a monotonic clock in seconds.
    """

    def __init__(
        self,
        spec: EndpointSpec,
        launch: Launcher,
        *,
        init_limit_s: float = INIT_LIMIT_S,
        keep_warm_s: float = 0.0,
        cruise_grace_s: float = 0.0,
        freeze: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.spec = spec
        self.stats = EndpointStats()
        self._freeze = freeze
        self._clock = clock
        self._starter = Starter(
            spec,
            self.stats,
            launch,
            init_limit_s,
            clock,
            launched=self._launched,
            ready=self._ready,
            failed=self._not_ready,
        )
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified whenever the pool may have room
        self._core = PoolCore(spec.pool, keep_warm_s, cruise_grace_s)
        self._tickets: dict[str, Ticket] = {}
        self._pipelines: dict[int, PipelineHandle] = {}
        self._start_errors: dict[int, LambdapoolError] = {}
        self._drained = threading.Condition(self._lock)  # notified when the last call in the pool ends
        self._superseded = False  # closed by a reload: a call arriving late is sent on (Superseded)
        self._detached: set[threading.Thread] = set()  # calls going on after their caller gave up
        self._replaced: dict[int, PipelineHandle] = {}  # by pid: pipelines whose init runs again elsewhere
        self._closed = False
        self._memory_limit_bytes = spec.memory_mb * 2**20
        self._id_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)
        #: Whether a pipeline has ever started (its init ran to the end), and the error the first start that
        #: failed before that ended with: what TabPy's ``/status`` calls LoadSuccessful and LoadFailed.
        self.ever_ready = False
        self.load_error: LambdapoolError | None = None
        self._load_settled = threading.Event()  # set at the first ready or at a failure before it

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
        tail: bool = False,
        give_up_after_s: float | None = None,
    ) -> CallResult:
        """Run one call with bound ``arguments`` through the pool and wait for it; raises a
        :class:`LambdapoolError`.

        ``payload`` is ``arguments`` as JSON, when the caller already has it. With ``may_queue`` false a call
        that finds ``ceil`` pipelines busy is rejected at once (:class:`QueueFull`), as Lambda throttles.
        ``request_id`` names the call for :meth:`cancel`; ``on_start`` is called once it has a pipeline;
        ``cancelled`` is asked once the call is registered, so that a cancel that came before it is not lost.
        ``lambda_event`` marks an event of the Lambda Invoke API (the only calls that may carry a task);
        ``tail`` asks the pipeline for the call's output (``LogType=Tail``: in :attr:`CallResult.log`, or in
        the error's ``call_log``). With ``give_up_after_s``, the caller stops waiting that long after the call
        arrived (API Gateway's integration timeout): :class:`GatewayTimeout` is raised then, while the call
        goes on to its end (queued, starting or running) in a thread the runtime owns, its outcome counted.
        """
        ticket = self.enter(
            arguments,
            payload,
            may_queue=may_queue,
            request_id=request_id,
            on_start=on_start,
            cancelled=cancelled,
            lambda_event=lambda_event,
            tail=tail,
        )
        return self.complete(ticket, give_up_after_s)

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
        tail: bool = False,
    ) -> Ticket:
        """The first half of :meth:`call`, which never waits: the call takes its place in the pool (a pipeline,
        one starting for it, or the queue), in the order calls enter. Raises what the pool answers at once
        (with ``may_queue`` false, :class:`QueueFull`). :meth:`complete` must follow."""
        request_id = request_id or f"{self._id_prefix}-{next(self._request_numbers)}"
        data = payload if payload is not None else json.dumps(arguments).encode()
        ticket = Ticket(request_id, self._clock(), on_start, lambda_event, data, may_queue, tail)
        with self._lock:
            if self._superseded:  # not counted here: its caller sends it to the pool that replaced this one
                raise Superseded.by_reload(self.spec.where)
            self.stats.count(Counter.CALLS)
        try:
            with self._lock:
                if self._closed:
                    raise Superseded.by_reload(self.spec.where) if self._superseded else PipelineCrashed.shutting_down()
                self._tickets[request_id] = ticket
                if cancelled is not None and cancelled():
                    raise Cancelled.before_start()
                actions = self._core.arrive(request_id, ticket.arrived, may_queue)
            self._execute(actions)
            if not may_queue and ticket.error is not None:
                raise ticket.error
        except LambdapoolError as error:
            self.stats.failed(error)
            self._forget(ticket)
            raise
        return ticket

    def complete(self, ticket: Ticket, give_up_after_s: float | None = None) -> CallResult:
        """The second half of :meth:`call`: wait for the call's pipeline, run it, and answer (``give_up_after_s``
        as in :meth:`call`)."""
        give_up_at = ticket.arrived + give_up_after_s if give_up_after_s is not None else None
        try:
            return self._settled(ticket, lambda: self._serve(ticket, give_up_at))
        except StillRunning as running:
            self.stats.count(Counter.GATEWAY_TIMEOUTS)
            self._detach(ticket, running.rest)
            raise GatewayTimeout.after(give_up_after_s or 0.0) from None

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

    def wait_loaded(self, timeout_s: float) -> bool:
        """Wait until a first pipeline has started, or a start failed before any did (at most ``timeout_s``);
        returns whether one of them happened."""
        return self._load_settled.wait(timeout_s)

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
        ``memory_mb`` (idle pipelines can neither grow nor run late), and retire a scale-to-zero pool's warm
        pipeline once its ``keep_warm_s`` is over. Called periodically by the emulator's supervisor thread."""
        now = self._clock()
        with self._lock:
            actions = self._core.tick(now)
        if actions:
            self._execute(actions)
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
            replaced = self._replaced.pop(pid, None)
            found = next(((i, p) for i, p in self._pipelines.items() if p.pid == pid), None)
            if found is not None:
                pool_id, pipeline = found
                died_idle = pipeline.kill_reason is None and self._core.state_of(pool_id) is PipelineState.IDLE
        if replaced is not None:
            replaced.mark_exited(status)
            return True
        if found is None:
            return False
        pipeline.mark_exited(status)
        if died_idle:  # killed from outside while idle: forget it so that no call is sent to it
            self._finish(pool_id, pipeline, healthy=False)
        return True

    @property
    def init_limit_s(self) -> float:
        """Lambda's Init limit, as this pool applies it."""
        return self._starter.init_limit_s

    def drain(self, timeout_s: float) -> bool:
        """Wait until no call is in the pool (queued, starting or running), at most ``timeout_s``; returns
        whether it emptied. Calls may still arrive meanwhile: they are served."""
        with self._drained:
            return self._drained.wait_for(lambda: not self._tickets, timeout_s)

    def stop_arrivals(self) -> None:
        """A reload replaced the pool: a call arriving from now on raises :class:`Superseded` (its caller
        sends it to the new pool); the calls already in the pool go on (:meth:`drain` waits for them)."""
        with self._lock:
            self._superseded = True

    def supersede(self) -> None:
        """:meth:`stop_arrivals`, then close the pool."""
        self.stop_arrivals()
        self.close()

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
        self._starter.close()
        with self._lock:
            detached = list(self._detached)
        for thread in detached:  # each ends once its pipeline is killed or its ticket failed, just above
            thread.join()

    # -- internals ------------------------------------------------------------------------------------

    def _settled(self, ticket: Ticket, serve: Callable[[], CallResult]) -> CallResult:
        """``serve()``'s result, counted, the ticket forgotten once it has an outcome (not when it raises
        :class:`StillRunning`: the call goes on)."""
        try:
            result = serve()
        except StillRunning:
            raise
        except LambdapoolError as error:
            self.stats.failed(error)
            self._forget(ticket)
            raise
        except BaseException:
            self._forget(ticket)
            raise
        self._forget(ticket)
        self.stats.succeeded(result.timing["total"])
        return result

    def _forget(self, ticket: Ticket) -> None:
        with self._lock:
            self._tickets.pop(ticket.request_id, None)
            if not self._tickets:
                self._drained.notify_all()

    def _serve(self, ticket: Ticket, give_up_at: float | None) -> CallResult:
        while True:
            if not self._wait_for_pipeline(ticket, give_up_at):
                raise StillRunning(lambda: self._serve(ticket, None))
            if ticket.error is not None:
                raise ticket.error
            outcome = self._run_on(ticket, ticket.payload, give_up_at)
            if outcome is not None:
                return outcome
            self._arrive_again(ticket, ticket.may_queue)

    def _detach(self, ticket: Ticket, rest: Callable[[], CallResult]) -> None:
        """Go on with a call its caller gave up on, in a thread of its own (joined in :meth:`close`): each
        waits on its own pipeline or place in the queue, so there are at most ``ceil + queue`` of them."""
        where, request_id = self.spec.where, ticket.request_id

        def finish() -> None:
            try:
                self._settled(ticket, rest)
            except LambdapoolError as error:
                log.info("%s: call %s ended with %s after its caller gave up", where, request_id, error)
            except Exception:
                log.exception("%s: call %s failed in the emulator after its caller gave up", where, request_id)
            finally:
                with self._lock:
                    self._detached.discard(thread)

        thread = threading.Thread(target=finish, name=f"lambdapool-detached-{ticket.request_id}")
        with self._lock:
            closing = self._closed  # close() has taken its list of threads to join: finish here (it fails at once)
            if not closing:
                self._detached.add(thread)
        if closing:
            finish()
        else:
            thread.start()

    def _wait_for_pipeline(self, ticket: Ticket, give_up_at: float | None = None) -> bool:
        """Wait until the call has a pipeline or an error; ``False`` once ``give_up_at`` has come first."""
        while not ticket.event.is_set():
            with self._lock:
                deadline = self._core.deadline_of(ticket.request_id)
            limits = [limit for limit in (deadline, give_up_at) if limit is not None]
            if not limits:  # waiting for a pipeline to start: that start always ends, either way
                ticket.event.wait()
                continue
            if ticket.event.wait(max(0.0, min(limits) - self._clock())):
                break
            now = self._clock()
            if deadline is not None and now >= deadline:
                with self._lock:
                    actions = self._core.expire(now)
                self._execute(actions)
            elif give_up_at is not None and now >= give_up_at and not ticket.event.is_set():
                return False
        return True

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

    def _run_on(self, ticket: Ticket, payload: bytes, give_up_at: float | None = None) -> CallResult | None:
        """Run the call on the pipeline it was given; ``None`` if that pipeline had already died. Raises
        :class:`StillRunning` if no reply came by ``give_up_at``."""
        assert ticket.pipeline_id is not None
        pool_id = ticket.pipeline_id
        with self._lock:
            pipeline = self._pipelines[pool_id]
            if self._freeze:
                pipeline.thaw()  # under the lock: a freeze for its previous call cannot come after

        def release(healthy: bool) -> None:
            self._release(ticket, pool_id, pipeline, healthy)

        try:
            return Exchange(self.spec, self.stats, self._clock, ticket, pipeline, release).run(payload, give_up_at)
        except NotDelivered:  # it died while idle, before its exit was reported: released as lost
            return None

    def _release(self, ticket: Ticket, pool_id: int, pipeline: PipelineHandle, healthy: bool) -> None:
        """The call is done with its pipeline: give it back to the pool (``healthy``) or end it."""
        with self._lock:
            ticket.pipeline_id = None  # the pipeline is not this call's anymore: a late cancel spares it
        self._finish(pool_id, pipeline, healthy)

    def _finish(self, pool_id: int, pipeline: PipelineHandle, healthy: bool) -> None:
        with self._lock:
            if self._core.state_of(pool_id) is None:
                return
            if healthy and pipeline.kill_reason is None:
                actions = self._core.done(pool_id, self._clock())
                self._freeze_if_idle(pool_id, pipeline)
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
                with self._lock:
                    closed = self._closed
                if not closed:
                    self._starter.start(action.pipeline_id, self._label(action.pipeline_id))
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
        with self._lock:
            waiting = self._core.snapshot().queued + 1
        full = action.reason is RejectReason.QUEUE_FULL
        self.stats.count(Counter.QUEUE_FULL if full else Counter.QUEUE_TIMEOUT)
        ticket.error = rejection(self.spec, full, self.stats.percentiles()["p50"], waiting)
        ticket.event.set()

    def _label(self, pool_id: int) -> str:
        """A pipeline's name in the envelope and the status: ``{service}-{endpoint}-{n}``."""
        return f"{self.spec.lambda_name}-{pool_id}"

    def _launched(self, pool_id: int, pipeline: PipelineHandle) -> bool:
        """A pipeline was launched for ``pool_id``: keep it (``False`` once closed: the starter kills it). One
        it replaces (an init run again) is kept until its exit is reported."""
        with self._lock:
            if self._closed:
                return False
            replaced = self._pipelines.get(pool_id)
            if replaced is not None and replaced is not pipeline:
                self._replaced[replaced.pid] = replaced
            self._pipelines[pool_id] = pipeline
            return True

    def _ready(self, pool_id: int, pipeline: PipelineHandle) -> None:
        self.ever_ready = True
        self._load_settled.set()
        with self._lock:
            actions = self._core.ready(pool_id, self._clock())
            self._freeze_if_idle(pool_id, pipeline)
        self._execute(actions)

    def _freeze_if_idle(self, pool_id: int, pipeline: PipelineHandle) -> None:
        """Freeze a pipeline the pool left idle (the caller holds the lock, so that no call is dispatched to
        it in between: :meth:`_run_on` thaws it under the same lock)."""
        if self._freeze and self._core.state_of(pool_id) is PipelineState.IDLE:
            pipeline.freeze()

    def _not_ready(self, pool_id: int, error: LambdapoolError) -> None:
        with self._lock:
            self._pipelines.pop(pool_id, None)
        self._start_failed(pool_id, error)

    def _start_failed(self, pool_id: int, error: LambdapoolError) -> None:
        if not self.ever_ready and self.load_error is None:
            self.load_error = error
            self._load_settled.set()
        label = self._label(pool_id)
        self.stats.record(error, label)
        log.error(
            "%s: pipeline %s failed to start: %s\n%s", self.spec.where, label, error.message, error.detailed_message
        )
        with self._lock:
            self._start_errors[pool_id] = error
            actions = self._core.start_failed(pool_id, self._clock())
        self._execute(actions)
