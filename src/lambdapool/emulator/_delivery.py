"""Asynchronous work delivered to the pools: submitted tasks, trigger events and ``Event`` invocations.

Lambda queues asynchronous invocations and hands them to the function as concurrency allows, retrying while
it is throttled, for up to a maximum event age. :class:`Deliveries` does the same for every endpoint: work
waits in the endpoint's FIFO lane and is delivered by threads :class:`Deliveries` owns (at most the pool's
``ceil + queue`` per endpoint, none while a lane is empty), which it stops and joins in :meth:`close`.
Every accepted piece of work ends with exactly one outcome: its ``on_success`` or its ``on_failure``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._errors import Cancelled, LambdapoolError, PipelineCrashed, QueueFull, QueueTimeout
from ._metrics import Counter
from ._runtime import CallResult, EndpointRuntime

log = logging.getLogger("lambdapool.delivery")
#: How long work keeps retrying a full pool, like Lambda's MaximumEventAgeInSeconds default (6 hours).
MAX_EVENT_AGE_S = 6 * 3600


def backoff_s(attempt: int) -> float:
    """The wait before retry ``attempt`` (0, 1, ...) of work that found its pool full: 50 ms doubling to 5 s."""
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
    accepted_at: float = 0.0
    cancelled: bool = False
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)
    _wake: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class _Lane:
    """One endpoint's waiting work and the number of threads delivering it."""

    waiting: deque[Delivery] = dataclasses.field(default_factory=deque)
    workers: int = 0


class Deliveries:
    """Delivers asynchronous work to the pools with owned threads (see the module docstring). Thread-safe.

    ``retry_delay_s(attempt)`` is the wait before each retry of work that found its pool full;
    ``max_age_s`` how long such work is kept before it fails with the pool's rejection.
    """

    def __init__(
        self,
        *,
        retry_delay_s: Callable[[int], float] = backoff_s,
        max_age_s: float = MAX_EVENT_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._retry_delay_s = retry_delay_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._lanes: dict[EndpointRuntime, _Lane] = {}
        self._named: dict[str, Delivery] = {}  # accepted work with a request id, until it ends
        self._unfinished: set[Delivery] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False

    def submit(self, delivery: Delivery) -> None:
        """Accept ``delivery``; an endpoint's work is taken in the order it was accepted (with several threads
        delivering, two calls may still reach the pool's queue in the other order). After :meth:`close` it
        fails at once."""
        delivery.accepted_at = self._clock()
        with self._lock:
            if not self._closed:
                lane = self._lanes.setdefault(delivery.runtime, _Lane())
                lane.waiting.append(delivery)
                self._unfinished.add(delivery)
                if delivery.request_id is not None:
                    self._named[delivery.request_id] = delivery
                pool = delivery.runtime.spec.pool
                if lane.workers < pool.ceil + pool.queue:
                    lane.workers += 1
                    self._start_worker(delivery.runtime, lane)
                return
        self._finish(delivery, PipelineCrashed.shutting_down())

    def cancel(self, request_id: str) -> Delivery | None:
        """Cancel the work named ``request_id``: waiting, it fails with :class:`Cancelled` at once; running, its
        call is cancelled in the pool. Returns it (wait on its ``finished``), or ``None`` if it is unknown."""
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
            delivery._wake.set()
            delivery.runtime.cancel(request_id)
        return delivery

    def close(self) -> None:
        """Stop accepting work and fail what still waits; wake work waiting to retry. Call
        :meth:`join` once the pools are closed (that ends the calls in flight)."""
        with self._lock:
            self._closed = True
            waiting = [delivery for lane in self._lanes.values() for delivery in lane.waiting]
            for lane in self._lanes.values():
                lane.waiting.clear()
            running = list(self._unfinished)
        for delivery in waiting:
            self._finish(delivery, PipelineCrashed.shutting_down())
        for delivery in running:
            delivery._wake.set()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for every delivering thread to end."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)

    # -- internals ------------------------------------------------------------------------------------

    def _start_worker(self, runtime: EndpointRuntime, lane: _Lane) -> None:
        """Start a thread delivering ``lane`` (the caller holds the lock and counted it in ``lane.workers``)."""
        thread = threading.Thread(
            target=self._work, args=(lane,), name=f"lambdapool-deliver-{runtime.spec.lambda_name}"
        )
        self._threads.add(thread)
        thread.start()

    def _work(self, lane: _Lane) -> None:
        # A worker leaves in the same critical section that finds its lane empty, so that work submitted
        # meanwhile always finds a worker or starts one.
        while True:
            with self._lock:
                if not lane.waiting:
                    lane.workers -= 1
                    self._threads.discard(threading.current_thread())
                    return
                delivery = lane.waiting.popleft()
            self._deliver(delivery)

    def _deliver(self, delivery: Delivery) -> None:
        attempt = 0
        while True:
            try:
                result = delivery.runtime.call(
                    delivery.arguments,
                    request_id=delivery.request_id,
                    on_start=delivery.on_start,
                    cancelled=lambda: delivery.cancelled,
                    lambda_event=delivery.lambda_event,
                )
            except (QueueFull, QueueTimeout) as error:
                # The pool is saturated: like Lambda's event queue, keep the work and try again.
                if self._closed or self._clock() - delivery.accepted_at > self._max_age_s:
                    self._finish(delivery, error)
                    return
                delivery._wake.wait(self._retry_delay_s(attempt))
                attempt += 1
                if delivery.cancelled:
                    self._finish(delivery, Cancelled.before_start())
                    return
                if self._closed:
                    self._finish(delivery, PipelineCrashed.shutting_down())
                    return
                continue
            except LambdapoolError as error:
                self._finish(delivery, error)
                return
            except Exception as exc:  # e.g. on_start failing to record a task's state: the work still ends
                log.exception("delivering asynchronous work to %s failed", delivery.runtime.spec.where)
                self._finish(delivery, LambdapoolError(f"delivering the work failed: {exc!r}"))
                return
            self._finish(delivery, result)
            return

    def _finish(self, delivery: Delivery, outcome: CallResult | LambdapoolError) -> None:
        try:
            if isinstance(outcome, LambdapoolError):
                delivery.on_failure(outcome)
            else:
                delivery.on_success(outcome)
        except Exception:
            log.exception("recording the outcome of asynchronous work for %s failed", delivery.runtime.spec.where)
        finally:
            with self._lock:
                self._unfinished.discard(delivery)
                if delivery.request_id is not None:
                    self._named.pop(delivery.request_id, None)
            delivery.finished.set()


def trigger_delivery(runtime: EndpointRuntime, event: dict[str, Any]) -> Delivery:
    """A schedule or S3 ``event`` for ``runtime``: counted in its status as delivered or failed (the failure
    kept as its ``lastError`` and logged)."""

    def delivered(_: CallResult) -> None:
        runtime.stats.count(Counter.EVENTS_DELIVERED)

    def failed(error: LambdapoolError) -> None:
        log.warning("%s failed on an event: %s: %s", runtime.spec.lambda_name, error.type_name(), error.message)
        runtime.stats.event_failed(error)

    return Delivery(runtime, event, on_success=delivered, on_failure=failed)
