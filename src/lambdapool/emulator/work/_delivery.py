"""Asynchronous work delivered to the pools: submitted tasks, trigger events and ``Event`` invocations.

Lambda queues asynchronous invocations and hands them to the function as its concurrency allows, for up to
a maximum event age. :class:`Deliveries` does the same for every endpoint: one FIFO queue per endpoint,
bounded only by that age, drained by threads it owns. Every accepted piece of work ends with exactly one
outcome, its ``on_success`` or its ``on_failure``: nothing is dropped without a recorded reason.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..._errors import Cancelled, LambdapoolError, NotFound, PipelineCrashed, QueueFull, QueueTimeout
from ..._limits import ASYNC_RETRY_DELAY_S, MAX_EVENT_AGE_S
from ..pool._calls import CallResult, Superseded, Ticket
from ..pool._metrics import Counter
from ..pool._runtime import EndpointRuntime

log = logging.getLogger("lambdapool.delivery")


def backoff_s(attempt: int) -> float:
    """The longest wait for room in a full pool (attempt 0, 1, ...; a freed pipeline ends it at once): 50 ms
    doubling to 5 s."""
    return min(0.05 * 2.0**attempt, 5.0)


def _ignore(_: Any) -> None:
    return None


@dataclasses.dataclass(eq=False)
class Delivery:
    """One piece of asynchronous work for ``runtime``: a call with bound ``arguments``.

    ``request_id`` names it for :meth:`Deliveries.cancel`; ``on_start`` runs once it has a pipeline;
    exactly one of ``on_success`` and ``on_failure`` runs once it has ended. ``finished`` is set after that.
    """

    runtime: EndpointRuntime
    arguments: dict[str, Any]
    request_id: str | None = None
    on_start: Callable[[], object] | None = None
    on_success: Callable[[CallResult], object] = _ignore
    on_failure: Callable[[LambdapoolError], object] = _ignore
    lambda_event: bool = False  # an event of the Lambda Invoke API (see EndpointRuntime.call)
    #: How many times a failed call is tried again (Lambda retries asynchronous invocations; tasks are not).
    retries: int = 0
    attempt: int = 1
    accepted_at: float = 0.0
    cancelled: bool = False
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class _Lane:
    """One endpoint's waiting work, and the thread that hands it to the pool (while there is any)."""

    waiting: deque[Delivery] = dataclasses.field(default_factory=deque)
    dispatcher: threading.Thread | None = None


class Deliveries:
    """Delivers asynchronous work to the pools with owned threads. Thread-safe.

    Each endpoint's work waits in a FIFO lane. One dispatcher thread per non-empty lane hands the oldest
    piece to the pool once the pool has room (a free pipeline, or room to start one), so the pool takes the
    work exactly in the order it was accepted and it never occupies the queue synchronous callers wait in;
    a thread per call in flight (at most ``ceil``) waits for its answer. ``retry_delay_s(attempt)`` bounds
    each wait for room (waits are woken as soon as a pipeline frees up); work older than ``max_age_s``
    fails with :class:`QueueTimeout`. :meth:`close` fails what still waits; :meth:`join` ends every thread.
    """

    def __init__(
        self,
        *,
        retry_delay_s: Callable[[int], float] = backoff_s,
        max_age_s: float = MAX_EVENT_AGE_S,
        async_retry_delay_s: float = ASYNC_RETRY_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._retry_delay_s = retry_delay_s
        self._max_age_s = max_age_s
        #: The wait before a failed event's first retry (the second waits twice as long).
        self.async_retry_delay_s = async_retry_delay_s
        self._clock = clock
        self._lock = threading.Lock()
        self._retries_due = threading.Condition(self._lock)
        self._retrying: list[tuple[float, int, Delivery]] = []  # a heap of (when, sequence, work)
        self._retry_numbers = itertools.count()
        self._retrier: threading.Thread | None = None
        self._lanes: dict[EndpointRuntime, _Lane] = {}
        self._named: dict[str, Delivery] = {}  # accepted work with a request id, until it ends
        self._threads: set[threading.Thread] = set()
        self._closed = False
        #: The pool that replaced a pool, after a reload (see :meth:`retarget`).
        self.successor: Callable[[EndpointRuntime], EndpointRuntime | None] = lambda runtime: None

    def submit(self, delivery: Delivery) -> None:
        """Accept ``delivery``: it is handed to its endpoint's pool after the work accepted before it. After
        :meth:`close` it fails at once."""
        delivery.accepted_at = self._clock()
        with self._lock:
            if not self._closed:
                self._lanes.setdefault(delivery.runtime, _Lane()).waiting.append(delivery)
                if delivery.request_id is not None:
                    self._named[delivery.request_id] = delivery
                self._ensure_dispatcher(delivery.runtime)
                return
        self._finish(delivery, PipelineCrashed.shutting_down())

    def retarget(self, successor: Callable[[EndpointRuntime], EndpointRuntime | None]) -> None:
        """After a reload: the work waiting for each pool (and the work waiting to be retried) moves to the
        pool that replaced it, ``successor(runtime)``, ahead of what that pool already has, keeping its
        order; the work of an endpoint the reload removed fails (:class:`NotFound`)."""
        orphaned: list[Delivery] = []
        with self._lock:
            self.successor = successor
            for runtime, lane in list(self._lanes.items()):
                new = successor(runtime)
                if new is runtime:
                    continue
                waiting = list(lane.waiting)
                lane.waiting.clear()
                if new is None:
                    orphaned += waiting
                    continue
                for delivery in waiting:
                    delivery.runtime = new
                self._lanes.setdefault(new, _Lane()).waiting.extendleft(reversed(waiting))
                self._ensure_dispatcher(new)
            for _, _, delivery in self._retrying:
                new = successor(delivery.runtime)
                if new is not None:
                    delivery.runtime = new
        for delivery in orphaned:
            self._finish(delivery, NotFound.removed(delivery.runtime.spec.where))

    def _ensure_dispatcher(self, runtime: EndpointRuntime) -> None:
        """Start the dispatcher of ``runtime``'s lane if it has work and none (the caller holds the lock)."""
        lane = self._lanes[runtime]
        if lane.waiting and lane.dispatcher is None:
            lane.dispatcher = self._start(
                self._dispatch, (runtime, lane), f"lambdapool-deliver-{runtime.spec.lambda_name}"
            )

    def idle(self) -> bool:
        """Whether no work waits, waits to be retried or is in flight."""
        with self._lock:
            waiting = any(lane.waiting for lane in self._lanes.values())
            in_flight = any(thread.name.startswith("lambdapool-call-") for thread in self._threads)
            return not (self._named or self._retrying or waiting or in_flight)

    def depth(self, runtime: EndpointRuntime) -> int:
        """How much of ``runtime``'s work waits for room in its pool."""
        with self._lock:
            lane = self._lanes.get(runtime)
            return len(lane.waiting) if lane is not None else 0

    def cancel(self, request_id: str) -> Delivery | None:
        """Cancel the work named ``request_id``: waiting, it fails with :class:`Cancelled` at once; handed to
        the pool, its call is cancelled there. Returns it (wait on its ``finished``), or ``None`` if unknown."""
        with self._lock:
            delivery = self._named.get(request_id)
            if delivery is None:
                return None
            delivery.cancelled = True
            lane = self._lanes.get(delivery.runtime)
            waiting = lane is not None and delivery in lane.waiting
            if waiting:
                assert lane is not None
                lane.waiting.remove(delivery)
        if waiting:
            self._finish(delivery, Cancelled.queued())
        else:
            delivery.runtime.cancel(request_id)
        return delivery

    def close(self) -> None:
        """Stop accepting work and fail what still waits. Call :meth:`join` once the pools are closed (that
        ends the calls in flight)."""
        with self._lock:
            self._closed = True
            waiting = [delivery for lane in self._lanes.values() for delivery in lane.waiting]
            waiting += [delivery for _, _, delivery in self._retrying]
            self._retrying.clear()
            self._retries_due.notify_all()
            for lane in self._lanes.values():
                lane.waiting.clear()
            runtimes = list(self._lanes)
        for delivery in waiting:
            self._finish(delivery, PipelineCrashed.shutting_down())
        for runtime in runtimes:
            runtime.nudge()  # a dispatcher waiting for room sees the lane closed

    def poke(self) -> None:
        """Make the retry thread look at its clock again (for an injected clock that moved)."""
        with self._retries_due:
            self._retries_due.notify_all()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for every dispatching and waiting thread to end."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)

    # -- internals ------------------------------------------------------------------------------------

    def _start(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> threading.Thread:
        """Start an owned thread (the caller holds the lock)."""
        thread = threading.Thread(target=self._owned, args=(target, args), name=name)
        self._threads.add(thread)
        thread.start()
        return thread

    def _owned(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _dispatch(self, runtime: EndpointRuntime, lane: _Lane) -> None:
        """Hand the lane's work to the pool, oldest first, as the pool has room. The thread leaves in the same
        critical section that finds the lane empty, so that work submitted meanwhile starts a new one."""
        attempt = 0
        while True:
            with self._lock:
                if not lane.waiting:
                    lane.dispatcher = None
                    return
                head = lane.waiting[0]
            if self._clock() - head.accepted_at > self._max_age(head):
                if self._take(lane, head):
                    where, limit_ms = runtime.spec.where, int(self._max_age(head) * 1000)
                    self._finish(head, QueueTimeout.waited(where, limit_ms, retry_after_s=1))
                continue
            if not runtime.wait_for_room(self._retry_delay_s(attempt), stop=lambda: self._closed):
                attempt += 1
                continue
            if not self._take(lane, head):
                continue  # cancelled, or the deliveries closed, meanwhile
            try:
                ticket = runtime.enter(
                    head.arguments,
                    may_queue=False,
                    request_id=head.request_id,
                    on_start=head.on_start,
                    cancelled=lambda head=head: head.cancelled,  # type: ignore[misc]
                    lambda_event=head.lambda_event,
                )
            except QueueFull:  # a synchronous call took the room first: the work keeps its place
                with self._lock:
                    lane.waiting.appendleft(head)
                attempt += 1
                continue
            except Superseded:  # a reload replaced the pool as the work arrived: on to the new one
                new = self.successor(runtime)
                if new is None:
                    self._finish(head, NotFound.removed(runtime.spec.where))
                    continue
                head.runtime = new
                with self._lock:
                    self._lanes.setdefault(new, _Lane()).waiting.appendleft(head)
                    self._ensure_dispatcher(new)
                continue
            except LambdapoolError as error:
                self._finish(head, error)
                continue
            attempt = 0
            with self._lock:
                self._start(self._run, (head, ticket), f"lambdapool-call-{runtime.spec.lambda_name}")

    def _take(self, lane: _Lane, head: Delivery) -> bool:
        with self._lock:
            if lane.waiting and lane.waiting[0] is head:
                lane.waiting.popleft()
                return True
            return False

    def _run(self, delivery: Delivery, ticket: Ticket) -> None:
        try:
            result = delivery.runtime.complete(ticket)
        except LambdapoolError as error:
            self._finish(delivery, error)
        except Exception as exc:  # e.g. on_start failing to record a task's state: the work still ends
            log.exception("delivering asynchronous work to %s failed", delivery.runtime.spec.where)
            self._finish(delivery, LambdapoolError(f"delivering the work failed: {exc!r}"))
        else:
            self._finish(delivery, result)

    def _max_age(self, delivery: Delivery) -> float:
        return min(self._max_age_s, float(delivery.runtime.spec.max_event_age_s))

    def _finish(self, delivery: Delivery, outcome: CallResult | LambdapoolError) -> None:
        if isinstance(outcome, LambdapoolError) and self._retry_later(delivery, outcome):
            return
        try:
            if isinstance(outcome, LambdapoolError):
                delivery.on_failure(outcome)
            else:
                delivery.on_success(outcome)
        except Exception:
            log.exception("recording the outcome of asynchronous work for %s failed", delivery.runtime.spec.where)
        finally:
            with self._lock:
                if delivery.request_id is not None:
                    self._named.pop(delivery.request_id, None)
            delivery.finished.set()

    def _retry_later(self, delivery: Delivery, error: LambdapoolError) -> bool:
        """Keep failed work for another attempt, as Lambda retries an asynchronous invocation: after
        ``async_retry_delay_s``, then twice that (Lambda's defaults: about 1 and 2 minutes), while it has
        retries left and is younger than its maximum age. Returns whether it will be retried."""
        if delivery.attempt > delivery.retries or isinstance(error, (Cancelled, QueueTimeout)):
            return False
        due = self._clock() + self.async_retry_delay_s * 2 ** (delivery.attempt - 1)
        if due - delivery.accepted_at > self._max_age(delivery):
            return False
        with self._lock:
            if self._closed:
                return False
            delivery.attempt += 1
            heapq.heappush(self._retrying, (due, next(self._retry_numbers), delivery))
            self._retries_due.notify_all()
            if self._retrier is None:
                self._retrier = self._start(self._retry, (), "lambdapool-deliver-retries")
        delivery.runtime.stats.count(Counter.ASYNC_RETRIES)
        log.warning(
            "%s failed (%s: %s); attempt %d of %d in %g s",
            delivery.runtime.spec.where,
            error.type_name(),
            error.message,
            delivery.attempt,
            delivery.retries + 1,
            due - self._clock(),
        )
        return True

    def _retry(self) -> None:
        """Put failed work back in its lane when its retry is due (the thread ends when none is pending)."""
        while True:
            with self._lock:
                while self._retrying and self._retrying[0][0] > self._clock() and not self._closed:
                    self._retries_due.wait(max(0.0, self._retrying[0][0] - self._clock()))
                if self._closed or not self._retrying:
                    self._retrier = None
                    return
                _, _, delivery = heapq.heappop(self._retrying)
            self._requeue(delivery)

    def _requeue(self, delivery: Delivery) -> None:
        with self._lock:
            if self._closed:
                return
            self._lanes.setdefault(delivery.runtime, _Lane()).waiting.append(delivery)
            self._ensure_dispatcher(delivery.runtime)


def trigger_delivery(runtime: EndpointRuntime, event: dict[str, Any]) -> Delivery:
    """A schedule or S3 ``event`` for ``runtime``: counted in its status as delivered or failed (the failure
    kept as its ``lastError`` and logged)."""

    def delivered(_: CallResult) -> None:
        runtime.stats.count(Counter.EVENTS_DELIVERED)

    def failed(error: LambdapoolError) -> None:
        log.warning("%s failed on an event: %s: %s", runtime.spec.lambda_name, error.type_name(), error.message)
        runtime.stats.event_failed(error)

    return Delivery(runtime, event, on_success=delivered, on_failure=failed, retries=runtime.spec.async_retries)
