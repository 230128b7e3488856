"""Deliveries: asynchronous work (tasks, trigger events) handed to the pools by owned threads.

Pools are EndpointRuntimes over in-memory pipelines (tests/unit/fakes.py); the retry delay and the clock
that ages work are injected. Nothing sleeps to wait: tests wait on events or poll with a deadline.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambdapool import BadRequest, PipelineCrashed, Pool, QueueTimeout
from lambdapool._errors import Cancelled, LambdapoolError
from lambdapool._model import EndpointSpec
from lambdapool.emulator.pool._calls import CallResult
from lambdapool.emulator.pool._runtime import EndpointRuntime
from lambdapool.emulator.work._delivery import Deliveries, Delivery, backoff_s, trigger_delivery

from .fakes import Background, FakeLauncher, FakePipeline, Gate, ManualClock, fake_runtime, wait_until

MakeRuntime = Callable[..., EndpointRuntime]


def delivering_threads() -> list[str]:
    """The threads Deliveries owns: a dispatcher per endpoint with waiting work, a thread per call in flight."""
    prefixes = ("lambdapool-deliver-", "lambdapool-call-")
    return sorted(thread.name for thread in threading.enumerate() if thread.name.startswith(prefixes))


class Recorder:
    """The outcomes of deliveries, in the order they happened, and the order calls reached the pipelines."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, Any]] = []  # (work name, "success" | "failure", value)
        self.finished_before_outcome: list[bool] = []
        self.started: list[str] = []
        self._lock = threading.Lock()

    def work(self, runtime: EndpointRuntime, name: str, **options: Any) -> Delivery:
        delivery: Delivery

        def succeeded(result: CallResult) -> None:
            self._record(delivery, name, "success", json.loads(result.result))

        def failed(error: LambdapoolError) -> None:
            self._record(delivery, name, "failure", error)

        delivery = Delivery(runtime, {"n": name}, on_success=succeeded, on_failure=failed, **options)
        return delivery

    def _record(self, delivery: Delivery, name: str, outcome: str, value: Any) -> None:
        with self._lock:
            self.finished_before_outcome.append(delivery.finished.is_set())
            self.outcomes.append((name, outcome, value))

    def handler(self, gates: dict[str, Gate] | None = None) -> Callable[[dict[str, Any], FakePipeline], Any]:
        """Records the order calls start; a call waits on the gate named by its ``n`` (or ``"*"``), if any."""

        def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
            name = arguments["n"]
            with self._lock:
                self.started.append(name)
            gate = (gates or {}).get(name) or (gates or {}).get("*")
            if gate is not None:
                gate.wait(pipeline)
            if arguments.get("fail"):
                raise BadRequest(f"{name} failed")
            return {"n": name}

        return handle

    def failure(self, name: str) -> LambdapoolError:
        (error,) = [value for work, outcome, value in self.outcomes if work == name and outcome == "failure"]
        return error


class Attempts:
    """An injected ``retry_delay_s``: records each attempt number and answers ``delay_s``."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.numbers: list[int] = []
        self._changed = threading.Condition()

    def __call__(self, attempt: int) -> float:
        with self._changed:
            self.numbers.append(attempt)
            self._changed.notify_all()
        return self.delay_s

    def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.numbers) >= count, timeout_s), self.numbers


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def runtimes() -> list[EndpointRuntime]:
    """Every runtime a test made."""
    return []


@pytest.fixture
def make_runtime(recorder: Recorder, runtimes: list[EndpointRuntime]) -> Iterator[MakeRuntime]:
    """Loaded runtimes over fake pipelines running ``recorder``'s handler; closed afterwards."""

    def make(pool: Pool, gates: dict[str, Gate] | None = None, endpoint_id: str = "ep") -> EndpointRuntime:
        handler = recorder.handler(gates)
        runtime = fake_runtime(
            EndpointSpec("svc", endpoint_id, pool=pool), FakeLauncher(lambda label: FakePipeline(label, handler))
        )
        runtimes.append(runtime)
        runtime.load()
        wait_until(lambda: runtime.occupancy().idle == pool.floor, what="the floor pipelines")
        return runtime

    yield make
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def make_deliveries(runtimes: list[EndpointRuntime]) -> Iterator[Callable[..., Deliveries]]:
    """Deliveries, shut down afterwards as the emulator does: close them, close the pools, join."""
    made: list[Deliveries] = []

    def make(**options: Any) -> Deliveries:
        deliveries = Deliveries(**{"retry_delay_s": Attempts(0.001), **options})
        made.append(deliveries)
        return deliveries

    yield make
    for deliveries in made:
        deliveries.close()
    for runtime in runtimes:
        runtime.close()
    for deliveries in made:
        deliveries.join(10)
    assert delivering_threads() == []


def one_pipeline(queue: int = 0) -> Pool:
    return Pool(floor=1, cruise=1, ceil=1, queue=queue, timeout_ms=60_000)


def test_backoff_doubles_from_50_ms_to_at_most_5_s() -> None:
    assert [backoff_s(attempt) for attempt in range(9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_work_is_delivered_through_the_pool_and_on_success_runs_once_before_finished_is_set(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries()
    work = recorder.work(runtime, "a")

    deliveries.submit(work)

    assert work.finished.wait(5)
    assert recorder.outcomes == [("a", "success", {"n": "a"})]
    assert recorder.finished_before_outcome == [False]
    assert runtime.status()["counters"]["succeeded"] == 1


def test_work_whose_call_fails_runs_only_on_failure_with_the_error(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries()
    work = recorder.work(runtime, "a")
    work.arguments["fail"] = True

    deliveries.submit(work)

    assert work.finished.wait(5)
    error = recorder.failure("a")
    assert isinstance(error, BadRequest)
    assert error.message == "a failed"
    assert [outcome for _, outcome, _ in recorder.outcomes] == ["failure"]
    assert recorder.finished_before_outcome == [False]


def test_an_outcome_callback_that_raises_still_finishes_the_work(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries()

    def broken(result: CallResult) -> None:
        raise OSError("No space left on device")

    first = Delivery(runtime, {"n": "a"}, on_success=broken)
    second = recorder.work(runtime, "b")

    deliveries.submit(first)
    deliveries.submit(second)

    assert first.finished.wait(5)
    assert second.finished.wait(5)
    assert recorder.outcomes == [("b", "success", {"n": "b"})]


def test_work_waits_while_the_pool_has_no_room_and_goes_through_once_a_pipeline_frees(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    attempts = Attempts(0.001)
    deliveries = make_deliveries(retry_delay_s=attempts)
    busy = Background(lambda: runtime.call({"n": "busy"}))  # an HTTP call holds the only pipeline
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "later")

    deliveries.submit(work)
    attempts.wait_for(3)  # it waited for room three times, each wait bounded by the injected delay
    assert not work.finished.is_set()
    assert deliveries.depth(runtime) == 1
    gates["busy"].open()
    busy.result()

    assert work.finished.wait(5)
    assert recorder.outcomes[-1] == ("later", "success", {"n": "later"})
    assert attempts.numbers == list(range(len(attempts.numbers)))
    assert runtime.status()["counters"]["queueFull"] == 0  # it waited for room; the pool never refused it


def test_work_older_than_max_age_fails_with_a_queue_timeout(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    clock = ManualClock()
    attempts = Attempts(0.001)
    deliveries = make_deliveries(retry_delay_s=attempts, max_age_s=60, clock=clock)
    busy = Background(lambda: runtime.call({"n": "busy"}))  # an HTTP call holds the only pipeline
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "old")
    deliveries.submit(work)
    attempts.wait_for(2)

    clock.advance(60)  # exactly max_age_s: still kept
    attempts.wait_for(len(attempts.numbers) + 2)
    assert not work.finished.is_set()

    clock.advance(0.001)
    assert work.finished.wait(5)

    error = recorder.failure("old")
    assert isinstance(error, QueueTimeout)
    assert error.message == "svc/ep: no pipeline became free within timeout_ms=60000"
    gates["busy"].open()
    busy.result()


# -- cancelling ------------------------------------------------------------------------------------------


def test_cancel_of_waiting_work_fails_it_with_cancelled_at_once(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)  # one delivering thread: the second work waits
    deliveries = make_deliveries()
    deliveries.submit(recorder.work(runtime, "busy"))
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "waiting", request_id="task-1")
    deliveries.submit(work)

    assert deliveries.cancel("task-1") is work

    assert work.finished.is_set()  # at once, not once the pool frees up
    error = recorder.failure("waiting")
    assert isinstance(error, Cancelled)
    assert error.message == "the call was cancelled while it waited in the queue"
    gates["busy"].open()
    assert deliveries.cancel("task-1") is None  # it has ended
    assert "waiting" not in recorder.started


def test_cancel_of_work_waiting_to_retry_fails_it_with_cancelled_at_once(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    attempts = Attempts(60.0)
    deliveries = make_deliveries(retry_delay_s=attempts)
    busy = Background(lambda: runtime.call({"n": "busy"}))  # an HTTP call holds the only pipeline
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "retrying", request_id="task-1")
    deliveries.submit(work)
    attempts.wait_for(1)  # the pool has no room: it waits (up to 60 s) for some

    assert deliveries.cancel("task-1") is work

    assert work.finished.wait(5)
    error = recorder.failure("retrying")
    assert isinstance(error, Cancelled)
    assert error.message == "the call was cancelled while it waited in the queue"
    gates["busy"].open()
    busy.result()


def test_asynchronous_work_never_takes_the_pools_queue_from_synchronous_calls(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=1), gates)
    deliveries = make_deliveries()
    busy = Background(lambda: runtime.call({"n": "busy"}))
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "async")
    deliveries.submit(work)
    assert runtime.occupancy().queued == 0 and deliveries.depth(runtime) == 1

    synchronous = Background(lambda: runtime.call({"n": "sync"}))  # the pool's one queue slot is free for it
    wait_until(lambda: runtime.occupancy().queued == 1, what="the synchronous call queued in the pool")
    gates["busy"].open()

    assert work.finished.wait(5)
    busy.result()
    synchronous.result()
    assert recorder.started == ["busy", "sync", "async"]


def test_cancel_of_running_work_cancels_its_call_in_the_pool(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"running": Gate()}
    runtime = make_runtime(one_pipeline(), gates)
    deliveries = make_deliveries()
    work = recorder.work(runtime, "running", request_id="task-1")
    deliveries.submit(work)
    assert gates["running"].reached.wait(5)

    assert deliveries.cancel("task-1") is work

    assert work.finished.wait(5)
    error = recorder.failure("running")
    assert isinstance(error, Cancelled)
    assert error.message == "the call was cancelled while running; pipeline svc-ep-1 was killed and is replaced"


def test_cancel_of_unknown_work_returns_none(make_deliveries: Callable[..., Deliveries]) -> None:
    assert make_deliveries().cancel("nothing") is None


# -- shutting down ---------------------------------------------------------------------------------------


def test_close_fails_waiting_work_and_join_leaves_no_delivering_thread(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"running": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    deliveries = make_deliveries()
    running = recorder.work(runtime, "running")
    waiting = recorder.work(runtime, "waiting")
    deliveries.submit(running)
    assert gates["running"].reached.wait(5)
    deliveries.submit(waiting)

    deliveries.close()

    assert waiting.finished.is_set()
    error = recorder.failure("waiting")
    assert isinstance(error, PipelineCrashed)
    assert error.message == "the emulator is shutting down"
    assert not running.finished.is_set()  # work in flight ends when the pools close
    runtime.close()
    deliveries.join(10)
    assert delivering_threads() == []
    assert isinstance(recorder.failure("running"), PipelineCrashed)


def test_close_wakes_work_waiting_to_retry(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    attempts = Attempts(60.0)
    deliveries = make_deliveries(retry_delay_s=attempts)
    busy = Background(lambda: runtime.call({"n": "busy"}))  # an HTTP call holds the only pipeline
    assert gates["busy"].reached.wait(5)
    work = recorder.work(runtime, "retrying", request_id="task-1")
    deliveries.submit(work)
    attempts.wait_for(1)  # it waits 60 s before trying again

    deliveries.close()

    assert work.finished.wait(5)
    error = recorder.failure("retrying")
    assert isinstance(error, PipelineCrashed)
    assert error.message == "the emulator is shutting down"
    gates["busy"].open()
    busy.result()


def test_close_wakes_trigger_events_waiting_to_retry(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    runtime = make_runtime(one_pipeline(queue=0), gates)
    attempts = Attempts(60.0)
    deliveries = make_deliveries(retry_delay_s=attempts)
    busy = Background(lambda: runtime.call({"n": "busy"}))
    assert gates["busy"].reached.wait(5)
    event = recorder.work(runtime, "event")  # no request_id, like trigger_delivery's
    deliveries.submit(event)
    attempts.wait_for(1)

    try:
        deliveries.close()

        assert event.finished.wait(0.5)  # waiting work ends in milliseconds
        assert isinstance(recorder.failure("event"), PipelineCrashed)
        deliveries.join(5)
        assert delivering_threads() == []  # the dispatcher waiting for room was woken too
    finally:
        gates["busy"].open()
        busy.result()


def test_work_submitted_after_close_fails_at_once(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries()
    deliveries.close()
    work = recorder.work(runtime, "late")

    deliveries.submit(work)

    assert work.finished.is_set()
    assert isinstance(recorder.failure("late"), PipelineCrashed)
    assert recorder.started == []


# -- threads and order -----------------------------------------------------------------------------------


def test_one_dispatcher_and_at_most_ceil_call_threads_deliver_one_endpoints_work(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    hold = Gate()
    runtime = make_runtime(Pool(floor=2, cruise=2, ceil=2, queue=1, timeout_ms=60_000), {"*": hold})
    deliveries = make_deliveries()
    works = [recorder.work(runtime, f"w{number}") for number in range(6)]

    for work in works:
        deliveries.submit(work)
    wait_until(lambda: len(recorder.started) == 2 and deliveries.depth(runtime) == 4, what="two works running")

    assert delivering_threads() == ["lambdapool-call-svc-ep"] * 2 + ["lambdapool-deliver-svc-ep"]
    assert runtime.occupancy().queued == 0
    hold.open()
    for work in works:
        assert work.finished.wait(5)
    assert sorted(name for name, outcome, _ in recorder.outcomes if outcome == "success") == [
        f"w{number}" for number in range(6)
    ]
    deliveries.join(10)
    assert delivering_threads() == []


def test_work_starts_in_the_order_it_was_accepted_on_one_pipeline(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    hold = Gate()
    runtime = make_runtime(one_pipeline(queue=0), {"w0": hold})
    deliveries = make_deliveries()
    works = [recorder.work(runtime, f"w{number}") for number in range(8)]
    deliveries.submit(works[0])
    assert hold.reached.wait(5)

    for work in works[1:]:
        deliveries.submit(work)
    hold.open()

    for work in works:
        assert work.finished.wait(5)
    assert recorder.started == [f"w{number}" for number in range(8)]


def test_work_starts_in_the_order_it_was_accepted_even_with_room_in_the_pools_queue(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    hold = Gate()
    runtime = make_runtime(one_pipeline(queue=2), {"w0": hold})
    deliveries = make_deliveries()
    works = [recorder.work(runtime, f"w{number}") for number in range(30)]
    deliveries.submit(works[0])
    assert hold.reached.wait(5)
    for work in works[1:]:
        deliveries.submit(work)
    assert deliveries.depth(runtime) == 29
    hold.open()

    for work in works:
        assert work.finished.wait(5)
    assert recorder.started == [f"w{number}" for number in range(30)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_work_whose_on_start_raises_still_ends_and_later_work_is_delivered(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline(queue=0))
    deliveries = make_deliveries()

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    first = recorder.work(runtime, "first", on_start=full_disk)
    deliveries.submit(first)
    second = recorder.work(runtime, "second")
    deliveries.submit(second)

    wait_until(lambda: first.finished.is_set() or not delivering_threads(), what="the first work to end")
    assert first.finished.is_set()
    assert [outcome for name, outcome, _ in recorder.outcomes if name == "first"] == ["failure"]
    assert second.finished.wait(5)
    assert ("second", "success", {"n": "second"}) in recorder.outcomes


def test_each_endpoint_has_its_own_lane(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    busy_runtime = make_runtime(one_pipeline(queue=0), gates, endpoint_id="busy")
    free_runtime = make_runtime(one_pipeline(queue=0), endpoint_id="free")
    deliveries = make_deliveries()
    deliveries.submit(recorder.work(busy_runtime, "busy"))
    assert gates["busy"].reached.wait(5)
    stuck = recorder.work(busy_runtime, "behind")
    deliveries.submit(stuck)
    other = recorder.work(free_runtime, "other")

    deliveries.submit(other)

    assert other.finished.wait(5)
    assert recorder.outcomes == [("other", "success", {"n": "other"})]
    assert not stuck.finished.is_set()
    gates["busy"].open()
    assert stuck.finished.wait(5)


# -- trigger events --------------------------------------------------------------------------------------


def test_trigger_delivery_counts_delivered_and_failed_events_and_keeps_the_last_error(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries]
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries(async_retry_delay_s=0.001)
    ok = trigger_delivery(runtime, {"n": "tick"})
    bad = trigger_delivery(runtime, {"n": "tock", "fail": True})

    deliveries.submit(ok)
    assert ok.finished.wait(5)
    assert runtime.status()["lastError"] is None
    deliveries.submit(bad)
    assert bad.finished.wait(5)

    status = runtime.status()
    assert (status["counters"]["eventsDelivered"], status["counters"]["eventsFailed"]) == (1, 1)
    assert status["counters"]["asyncRetries"] == 2  # tried three times, as Lambda does, before it failed
    last_error = status["lastError"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", last_error.pop("at"))
    assert last_error == {"errorType": "BadRequest", "message": "tock failed", "detailedMessage": "tock failed"}


def test_failed_asynchronous_work_is_retried_twice_with_doubling_delays_then_fails(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    clock = ManualClock()
    deliveries = make_deliveries(async_retry_delay_s=60.0, clock=clock)
    work = recorder.work(runtime, "flaky", retries=2)
    work.arguments["fail"] = True

    deliveries.submit(work)
    wait_until(lambda: recorder.started == ["flaky"], what="the first attempt")
    assert not work.finished.is_set()  # kept for a retry, not failed
    clock.advance(59.9)
    assert recorder.started == ["flaky"]
    clock.advance(0.1)
    deliveries.poke()
    wait_until(lambda: recorder.started == ["flaky", "flaky"], what="the retry after 60 s")
    clock.advance(120)
    deliveries.poke()
    assert work.finished.wait(5)
    assert recorder.started == ["flaky"] * 3
    assert isinstance(recorder.failure("flaky"), BadRequest)
    assert runtime.status()["counters"]["asyncRetries"] == 2


def test_tasks_are_not_retried(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    runtime = make_runtime(one_pipeline())
    deliveries = make_deliveries(async_retry_delay_s=0.001)
    work = recorder.work(runtime, "task")  # retries=0: a task's record is final once it failed
    work.arguments["fail"] = True
    deliveries.submit(work)
    assert work.finished.wait(5)
    assert recorder.started == ["task"] and runtime.status()["counters"]["asyncRetries"] == 0


# -- a reload replaces the pools ----------------------------------------------------------------------------


def test_work_waiting_for_a_reloaded_pool_moves_to_its_successor_in_order(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    old = make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), gates)
    new = make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), endpoint_id="ep2")
    deliveries = make_deliveries()
    deliveries.submit(recorder.work(old, "busy"))
    assert gates["busy"].reached.wait(5)
    for name in ("a", "b", "c"):
        deliveries.submit(recorder.work(old, name))
    wait_until(lambda: deliveries.depth(old) == 3, what="three waiting")

    deliveries.retarget(lambda runtime: new if runtime is old else None)

    wait_until(lambda: len(recorder.outcomes) == 3, what="the moved work, served by the successor")
    assert [(name, outcome) for name, outcome, _ in recorder.outcomes] == [
        ("a", "success"),
        ("b", "success"),
        ("c", "success"),
    ]
    assert deliveries.depth(old) == 0
    gates["busy"].open()
    wait_until(lambda: len(recorder.outcomes) == 4, what="the work already running, finished where it ran")


def test_work_for_an_endpoint_a_reload_removed_fails_not_found(
    make_runtime: MakeRuntime, make_deliveries: Callable[..., Deliveries], recorder: Recorder
) -> None:
    gates = {"busy": Gate()}
    old = make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), gates)
    deliveries = make_deliveries()
    deliveries.submit(recorder.work(old, "busy"))
    assert gates["busy"].reached.wait(5)
    deliveries.submit(recorder.work(old, "orphan"))
    wait_until(lambda: deliveries.depth(old) == 1, what="the waiting work")

    deliveries.retarget(lambda runtime: None)

    error = recorder.failure("orphan")
    assert (error.status, error.message) == (404, "svc/ep no longer exists")
    gates["busy"].open()
