"""EndpointRuntime, the shell that carries out PoolCore's decisions, over in-memory pipelines (tests/unit/fakes.py).

No processes and no sockets: pipelines are :class:`FakePipeline` s, time is a :class:`ManualClock` the test
moves. Threads stand for the HTTP handlers that call the runtime; nothing sleeps to wait for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambdapool import BadRequest, FunctionError, OutOfMemory, PipelineCrashed, Pool, QueueFull, QueueTimeout, Timeout
from lambdapool._errors import Cancelled, LambdapoolError
from lambdapool._gateway import GatewayTimeout
from lambdapool._model import EndpointSpec
from lambdapool.emulator.pool._calls import CallResult, Superseded
from lambdapool.emulator.pool._core import PoolSnapshot
from lambdapool.emulator.pool._pipeline import KillReason
from lambdapool.emulator.pool._runtime import EndpointRuntime

from .fakes import Background, FakeLauncher, FakePipeline, Gate, ManualClock, fake_runtime, wait_until

MiB = 2**20
MakeRuntime = Callable[..., EndpointRuntime]


def spec(pool: Pool, *, timeout_s: int = 5, memory_mb: int = 128) -> EndpointSpec:
    return EndpointSpec("svc", "ep", pool=pool, timeout_s=timeout_s, memory_mb=memory_mb)


def starters_alive() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("lambdapool-start-")]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_runtime(clock: ManualClock) -> Iterator[MakeRuntime]:
    """Builds runtimes over fake pipelines on the test's clock; closes them all afterwards."""
    made: list[EndpointRuntime] = []

    def make(
        pool: Pool,
        launcher: FakeLauncher | None = None,
        *,
        timeout_s: int = 5,
        memory_mb: int = 128,
        **options: Any,
    ) -> EndpointRuntime:
        runtime = fake_runtime(
            spec(pool, timeout_s=timeout_s, memory_mb=memory_mb), launcher, **{"clock": clock, **options}
        )
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()
    assert starters_alive() == []


def handler_with_gates(gates: dict[str, Gate]) -> Callable[[dict[str, Any], FakePipeline], Any]:
    """A handler that answers ``{"n": n}`` once the gate named by the call's ``n`` is open (no gate: at once)."""

    def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        gate = gates.get(arguments["n"])
        if gate is not None:
            gate.wait(pipeline)
        return {"n": arguments["n"]}

    return handle


def launcher_with(handler: Callable[[dict[str, Any], FakePipeline], Any], **pipeline_options: Any) -> FakeLauncher:
    return FakeLauncher(lambda label: FakePipeline(label, handler, **pipeline_options))


def loaded(runtime: EndpointRuntime, idle: int) -> EndpointRuntime:
    """``runtime`` once its floor pipelines have started."""
    runtime.load()
    wait_until(lambda: runtime.occupancy().idle == idle, what=f"{idle} idle pipelines")
    return runtime


def call_in_background(runtime: EndpointRuntime, n: str, **options: Any) -> Background[CallResult]:
    return Background(lambda: runtime.call({"n": n}, **options), name=f"test-call-{n}")


def counters(runtime: EndpointRuntime) -> dict[str, int]:
    return runtime.status()["counters"]


def nonzero_counters(runtime: EndpointRuntime) -> dict[str, int]:
    return {name: value for name, value in counters(runtime).items() if value}


# -- loading and calling --------------------------------------------------------------------------------


def test_load_starts_the_floor_pipelines_in_the_background(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = make_runtime(Pool(floor=2, cruise=2, ceil=4, queue=0), launcher)

    loaded(runtime, idle=2)

    assert sorted(pipeline.label for pipeline in launcher.launched) == ["svc-ep-1", "svc-ep-2"]
    assert runtime.occupancy().starting == 0


def test_a_call_runs_on_a_pipeline_and_its_envelope_has_response_timing_and_api_context(
    make_runtime: MakeRuntime,
) -> None:
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)

    result = runtime.call({"x": 1}, request_id="req-1")

    assert result.result == b'{"x": 1}'
    assert json.loads(result.envelope()) == {
        "response": {"x": 1},
        "timing": {"wait": 0.0, "coldStart": 0.0, "execution": 0.5, "total": 0.0},
        "apiContext": {"serviceId": "svc", "endpointId": "ep", "pipelineId": "svc-ep-1", "coldStart": False},
    }
    (pipeline,) = launcher.launched
    assert pipeline.headers == [{"op": "call", "requestId": "req-1", "timeoutS": 5, "cold": False}]
    assert nonzero_counters(runtime) == {"calls": 1, "succeeded": 1}


def test_the_envelope_splices_the_result_bytes_unchanged() -> None:
    result = CallResult(b'{"b": 1,  "a": [1.50]}', {"total": 1.0}, {"pipelineId": "p"})

    assert (
        result.envelope()
        == b'{"response":{"b": 1,  "a": [1.50]},"timing":{"total":1.0},"apiContext":{"pipelineId":"p"}}'
    )


def test_a_call_that_waits_for_a_start_is_cold_with_the_start_time_measured_on_the_clock(
    make_runtime: MakeRuntime, clock: ManualClock
) -> None:
    start = Gate()
    launcher = FakeLauncher(lambda label: FakePipeline(label, start_gate=start))
    runtime = make_runtime(Pool(floor=0, cruise=1, ceil=1, queue=0), launcher)

    call = call_in_background(runtime, "a")
    assert start.reached.wait(5)
    clock.advance(0.25)  # app.py's init code takes 250 ms
    start.open()
    result = call.result()

    envelope = json.loads(result.envelope())
    assert envelope["timing"] == {"wait": 0.0, "coldStart": 250.0, "execution": 0.5, "total": 250.0}
    assert envelope["apiContext"]["coldStart"] is True
    assert launcher.launched[0].headers[0]["cold"] is True
    assert launcher.launched[0].init_ms == 250.0
    assert counters(runtime)["coldStarts"] == 1


def test_a_queued_call_is_served_warm_and_its_wait_is_measured_on_the_clock(
    make_runtime: MakeRuntime, clock: ManualClock
) -> None:
    gates = {"a": Gate()}
    runtime = loaded(
        make_runtime(
            Pool(floor=1, cruise=1, ceil=1, queue=1, timeout_ms=60_000), launcher_with(handler_with_gates(gates))
        ),
        idle=1,
    )
    first = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    second = call_in_background(runtime, "b")
    wait_until(lambda: runtime.occupancy().queued == 1, what="a queued call")

    clock.advance(1.5)
    gates["a"].open()

    assert json.loads(first.result().envelope())["response"] == {"n": "a"}
    envelope = json.loads(second.result().envelope())
    assert envelope["timing"] == {"wait": 1500.0, "coldStart": 0.0, "execution": 0.5, "total": 1500.0}
    assert envelope["apiContext"] == {
        "serviceId": "svc",
        "endpointId": "ep",
        "pipelineId": "svc-ep-1",
        "coldStart": False,
    }


# -- failures during a call ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "error_type", "status"),
    [
        (BadRequest("x must be positive"), "BadRequest", 400),
        (FunctionError("ZeroDivisionError", "division by zero", "Traceback ..."), "ZeroDivisionError", 500),
    ],
)
def test_a_function_error_keeps_the_pipeline_and_is_raised_with_its_error_type(
    make_runtime: MakeRuntime, raised: LambdapoolError, error_type: str, status: int
) -> None:
    def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        if arguments.get("fail"):
            raise raised
        return "ok"

    launcher = launcher_with(handle)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)

    with pytest.raises(LambdapoolError) as caught:
        runtime.call({"fail": True})

    assert caught.value.to_body() == raised.to_body()
    assert (caught.value.type_name(), caught.value.status) == (error_type, status)
    assert runtime.call({}).result == b'"ok"'
    (pipeline,) = launcher.launched
    assert (pipeline.calls, pipeline.kill_reason) == (2, None)
    assert nonzero_counters(runtime) == {"calls": 2, "succeeded": 1, "failed": 1}


def test_a_pipeline_that_dies_during_a_call_gives_pipeline_crashed_and_is_replaced_below_cruise(
    make_runtime: MakeRuntime,
) -> None:
    def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        if arguments.get("die"):
            pipeline.die(256)  # exit code 1
        return "ok"

    launcher = launcher_with(handle)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)

    with pytest.raises(PipelineCrashed) as caught:
        runtime.call({"die": True})

    assert caught.value.status == 502
    assert caught.value.message == "the pipeline died during the call: the pipeline process exited with code 1"
    assert "pipeline svc-ep-1" in caught.value.detailed_message
    wait_until(lambda: runtime.occupancy().idle == 1, what="a replacement pipeline")
    assert [pipeline.label for pipeline in launcher.launched] == ["svc-ep-1", "svc-ep-2"]
    assert json.loads(runtime.call({}).envelope())["apiContext"]["pipelineId"] == "svc-ep-2"
    assert nonzero_counters(runtime) == {"calls": 2, "succeeded": 1, "failed": 1, "crashes": 1}


def test_a_pipeline_killed_from_outside_during_a_call_is_not_replaced_at_cruise_zero(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)

    call = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    launcher.launched[0].die(9)  # SIGKILL from outside

    error = call.error()
    assert isinstance(error, PipelineCrashed)
    assert error.message == "the pipeline died during the call: the pipeline process was killed by SIGKILL"
    assert len(launcher.launched) == 1
    assert runtime.status()["pipelines"]["total"] == 0


# -- the supervisor: deadlines and memory ----------------------------------------------------------------


def test_supervise_kills_a_call_past_its_deadline_with_timeout(make_runtime: MakeRuntime, clock: ManualClock) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher, timeout_s=5), idle=1)
    call = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    pipeline = launcher.launched[0]
    assert pipeline.call_deadline == clock() + 5

    clock.advance(5)
    runtime.supervise()  # at the deadline, not past it
    assert pipeline.kill_reason is None

    clock.advance(0.001)
    runtime.supervise()

    error = call.error()
    assert isinstance(error, Timeout)
    assert (error.type_name(), error.status) == ("Timeout", 504)
    assert error.message == "svc/ep ran longer than timeout_s=5"
    assert pipeline.kill_reason is KillReason.TIMEOUT
    assert counters(runtime)["timeouts"] == 1
    wait_until(lambda: runtime.occupancy().idle == 1, what="a replacement pipeline")
    assert len(launcher.launched) == 2


def test_supervise_kills_a_running_pipeline_over_memory_mb_with_out_of_memory(make_runtime: MakeRuntime) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher, memory_mb=128), idle=1)
    call = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    pipeline = launcher.launched[0]

    pipeline.rss = 128 * MiB
    runtime.supervise()  # at the limit, not over it
    assert pipeline.kill_reason is None

    pipeline.rss = 128 * MiB + 1
    runtime.supervise()

    error = call.error()
    assert isinstance(error, OutOfMemory)
    assert error.message == "svc/ep used more than memory_mb=128"
    assert pipeline.kill_reason is KillReason.OUT_OF_MEMORY
    assert counters(runtime)["outOfMemory"] == 1


def test_supervise_leaves_idle_pipelines_alone(make_runtime: MakeRuntime, clock: ManualClock) -> None:
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)
    pipeline = launcher.launched[0]
    pipeline.rss = 1024 * MiB
    clock.advance(3600)

    runtime.supervise()

    assert pipeline.kill_reason is None
    assert runtime.occupancy().idle == 1


def test_a_reply_whose_peak_rss_is_over_memory_mb_is_out_of_memory(make_runtime: MakeRuntime) -> None:
    def grow(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        pipeline.rss = 200 * MiB
        return "done"

    launcher = launcher_with(grow)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher, memory_mb=128), idle=1)

    with pytest.raises(OutOfMemory) as caught:
        runtime.call({})

    assert caught.value.message == "svc/ep used more than memory_mb=128"
    assert launcher.launched[0].kill_reason is KillReason.OUT_OF_MEMORY
    assert counters(runtime)["outOfMemory"] == 1
    wait_until(lambda: len(launcher.launched) == 2, what="a replacement pipeline")


def test_a_memory_error_in_the_function_ends_its_pipeline(make_runtime: MakeRuntime) -> None:
    def exhaust(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        raise OutOfMemory.over("svc/ep", 128, "MemoryError in the function")

    launcher = launcher_with(exhaust)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)

    with pytest.raises(OutOfMemory) as caught:
        runtime.call({})

    assert caught.value.detailed_message == "MemoryError in the function"
    assert launcher.launched[0].killed.is_set()
    assert counters(runtime)["outOfMemory"] == 1
    wait_until(lambda: len(launcher.launched) == 2, what="a replacement pipeline")


# -- failed starts ---------------------------------------------------------------------------------------


def test_a_start_that_reports_init_error_fails_the_waiting_call_with_its_message_and_counts_a_crash(
    make_runtime: MakeRuntime,
) -> None:
    init_error = {
        "op": "init_error",
        "error": {
            "errorType": "ImportError",
            "message": "app.py failed to load: ImportError: no module named pandas",
            "detailedMessage": "Traceback (most recent call last): ...",
        },
    }
    launcher = FakeLauncher(lambda label: FakePipeline(label, ready=init_error))
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)

    with pytest.raises(PipelineCrashed) as caught:
        runtime.call({})

    assert caught.value.message == "app.py failed to load: ImportError: no module named pandas"
    assert caught.value.detailed_message == "Traceback (most recent call last): ..."
    assert launcher.launched[0].kill_reason is KillReason.FAILED_START
    assert nonzero_counters(runtime) == {"calls": 1, "failed": 1, "crashes": 1}
    assert runtime.status()["pipelines"]["total"] == 0


def test_an_init_past_lambdas_limit_runs_again_and_the_waiting_call_is_served(make_runtime: MakeRuntime) -> None:
    starts = iter([Gate(), None])  # the first init never reports; the one run again reports at once
    launcher = FakeLauncher(lambda label: FakePipeline(label, start_gate=next(starts)))
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher, init_limit_s=0.05)

    result = runtime.call({"x": 1})

    assert result.result == b'{"x": 1}' and result.api_context["coldStart"] is True
    first, again = launcher.launched
    assert (first.label, again.label) == ("svc-ep-1", "svc-ep-1")  # the same execution environment's slot
    assert first.kill_reason is KillReason.INIT_RERUN and first.calls == 0
    assert again.calls == 1 and again.init_rerun_at is not None
    assert nonzero_counters(runtime) == {"calls": 1, "succeeded": 1, "coldStarts": 1, "initReruns": 1}


def test_the_call_that_waited_for_an_init_run_again_has_its_timeout_counted_from_that_init(
    make_runtime: MakeRuntime, clock: ManualClock
) -> None:
    rerun_start = Gate()
    starts = iter([Gate(), rerun_start])
    launcher = FakeLauncher(
        lambda label: FakePipeline(label, lambda arguments, pipeline: pipeline.call_deadline, start_gate=next(starts))
    )
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher, init_limit_s=0.05, timeout_s=5)
    arrived = clock()
    call = Background(lambda: runtime.call({}))
    assert rerun_start.reached.wait(5)
    rerun_at = launcher.launched[1].init_rerun_at
    assert rerun_at is not None and rerun_at >= arrived

    clock.advance(3)  # the init run again takes 3 s of the call's 5
    rerun_start.open()

    assert json.loads(call.result().result) == rerun_at + 5  # not 3 s later, when the call reached the function
    assert launcher.launched[1].headers[0]["timeoutS"] == 2.0  # and the function is told it has 2 s left


def test_the_exit_of_a_pipeline_whose_init_ran_again_elsewhere_is_still_reported_to_it(
    make_runtime: MakeRuntime,
) -> None:
    starts = iter([Gate(), None])
    launcher = FakeLauncher(lambda label: FakePipeline(label, start_gate=next(starts)))
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher, init_limit_s=0.05)
    runtime.call({})
    first, again = launcher.launched

    assert runtime.on_exit(first.pid, 9) is True

    assert first.reported_exits == [9] and again.reported_exits == []  # the one run again is left alone


def test_an_init_run_again_past_timeout_s_fails_the_call_with_a_timeout(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher(lambda label: FakePipeline(label, start_gate=Gate()))  # never reports
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher, init_limit_s=0.05, timeout_s=1)

    with pytest.raises(Timeout) as caught:
        runtime.call({})

    assert caught.value.message == "svc/ep ran longer than timeout_s=1"
    assert "ran past Lambda's 0.05 s Init limit, so it ran again within the first call" in caught.value.detailed_message
    first, again = launcher.launched
    assert (first.kill_reason, again.kill_reason) == (KillReason.INIT_RERUN, KillReason.TIMEOUT)
    assert nonzero_counters(runtime) == {"calls": 1, "failed": 1, "timeouts": 1, "initReruns": 1}


def test_a_launcher_that_raises_fails_the_waiting_call_with_pipeline_crashed(make_runtime: MakeRuntime) -> None:
    def refuse(label: str) -> FakePipeline:
        raise RuntimeError("the emulator is stopped")

    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), FakeLauncher(refuse))

    with pytest.raises(PipelineCrashed) as caught:
        runtime.call({})

    assert caught.value.message == "could not start a pipeline: the emulator is stopped"
    assert runtime.status()["pipelines"]["total"] == 0


def test_a_floor_pipeline_that_fails_to_start_is_not_restarted(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher(
        lambda label: FakePipeline(label, ready={"op": "init_error", "error": {"message": "m", "detailedMessage": "d"}})
    )
    runtime = make_runtime(Pool(floor=1, cruise=1, ceil=2, queue=0), launcher)

    runtime.load()

    wait_until(
        lambda: counters(runtime)["crashes"] == 1 and runtime.status()["pipelines"]["total"] == 0,
        what="the failed start, forgotten",
    )
    assert len(launcher.launched) == 1
    assert runtime.status()["lastError"]["message"] == "m"  # kept for the status page and the dashboard


# -- the queue -------------------------------------------------------------------------------------------


def test_a_full_queue_rejects_with_queue_full_and_a_retry_after_of_at_least_one_second(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate()}
    runtime = loaded(
        make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher_with(handler_with_gates(gates))), idle=1
    )
    busy = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)

    with pytest.raises(QueueFull) as caught:
        runtime.call({"n": "b"})

    assert caught.value.status == 429
    assert caught.value.message == "svc/ep: all 1 pipelines are busy and 0 requests already wait"
    assert caught.value.retry_after_s == 1
    assert caught.value.headers() == {"Retry-After": "1"}
    assert counters(runtime)["queueFull"] == 1
    gates["a"].open()
    assert busy.result().result == b'{"n": "a"}'


def test_retry_after_is_the_queues_expected_drain_time_from_recent_latencies(
    make_runtime: MakeRuntime, clock: ManualClock
) -> None:
    gates = {"busy": Gate()}

    def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        if arguments["n"] == "slow":
            clock.advance(2.5)  # a call that takes 2.5 s
        return handler_with_gates(gates)(arguments, pipeline)

    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher_with(handle)), idle=1)
    runtime.call({"n": "slow"})
    busy = call_in_background(runtime, "busy")
    assert gates["busy"].reached.wait(5)

    with pytest.raises(QueueFull) as caught:
        runtime.call({"n": "rejected"})

    assert runtime.status()["latencyMs"] == {"p50": 2500.0, "p90": 2500.0, "p99": 2500.0}
    assert caught.value.retry_after_s == 3  # ceil(2.5 s per call x 1 waiting / 1 pipeline)
    gates["busy"].open()
    busy.result()


def test_a_call_that_may_not_queue_is_rejected_at_once_while_ceil_pipelines_are_busy(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate()}
    runtime = loaded(
        make_runtime(
            Pool(floor=1, cruise=1, ceil=1, queue=4, timeout_ms=60_000), launcher_with(handler_with_gates(gates))
        ),
        idle=1,
    )
    busy = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)

    with pytest.raises(QueueFull):
        runtime.call({"n": "b"}, may_queue=False)

    assert runtime.occupancy().queued == 0
    assert counters(runtime)["queueFull"] == 1
    gates["a"].open()
    busy.result()


def test_a_queued_call_times_out_when_the_clock_passes_its_deadline_not_before(
    make_runtime: MakeRuntime, clock: ManualClock
) -> None:
    gates = {"a": Gate()}
    runtime = loaded(
        make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=1, timeout_ms=20), launcher_with(handler_with_gates(gates))),
        idle=1,
    )
    busy = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    reads_before = clock.reads
    queued = call_in_background(runtime, "b")
    wait_until(lambda: runtime.occupancy().queued == 1, what="a queued call")

    # The waiting thread re-reads the clock every 20 ms of real time; it has looked at it (and tried to expire
    # its request) several times without the clock passing the deadline: it still waits.
    clock.wait_for_reads(reads_before + 6)
    assert not queued.done.is_set()
    assert runtime.occupancy().queued == 1

    clock.advance(0.021)
    error = queued.error()

    assert isinstance(error, QueueTimeout)
    assert error.message == "svc/ep: no pipeline became free within timeout_ms=20"
    assert error.retry_after_s is not None and error.retry_after_s >= 1
    assert runtime.occupancy().queued == 0
    assert counters(runtime)["queueTimeout"] == 1
    gates["a"].open()
    busy.result()


# -- cancelling ------------------------------------------------------------------------------------------


def test_cancel_of_a_queued_call_raises_cancelled_and_leaves_the_queue(make_runtime: MakeRuntime) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=1, timeout_ms=60_000), launcher), idle=1)
    busy = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)
    queued = call_in_background(runtime, "b", request_id="task-b")
    wait_until(lambda: runtime.occupancy().queued == 1, what="a queued call")

    assert runtime.cancel("task-b") is True

    error = queued.error()
    assert isinstance(error, Cancelled)
    assert (error.status, error.message) == (409, "the call was cancelled while it waited in the queue")
    assert runtime.occupancy().queued == 0
    gates["a"].open()
    busy.result()
    assert launcher.launched[0].calls == 1  # the cancelled call never ran


def test_cancel_of_an_unknown_call_returns_false(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0))

    assert runtime.cancel("nobody") is False


def test_cancel_of_a_running_call_kills_its_pipeline_which_is_replaced(make_runtime: MakeRuntime) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)
    running = call_in_background(runtime, "a", request_id="task-a")
    assert gates["a"].reached.wait(5)

    assert runtime.cancel("task-a") is True

    error = running.error()
    assert isinstance(error, Cancelled)
    assert error.message == "the call was cancelled while running; pipeline svc-ep-1 was killed and is replaced"
    assert launcher.launched[0].kill_reason is KillReason.CANCELLED
    wait_until(lambda: runtime.occupancy().idle == 1, what="a replacement pipeline")
    assert [pipeline.label for pipeline in launcher.launched] == ["svc-ep-1", "svc-ep-2"]
    assert counters(runtime)["crashes"] == 0


def test_cancel_while_the_pipeline_starts_gives_the_pipeline_back_unused(make_runtime: MakeRuntime) -> None:
    start = Gate()
    launcher = FakeLauncher(lambda label: FakePipeline(label, start_gate=start))
    runtime = make_runtime(Pool(floor=0, cruise=1, ceil=1, queue=0), launcher)
    waiting = call_in_background(runtime, "a", request_id="task-a")
    assert start.reached.wait(5)

    assert runtime.cancel("task-a") is True
    start.open()

    error = waiting.error()
    assert isinstance(error, Cancelled)
    assert error.message == "the call was cancelled before it started"
    (pipeline,) = launcher.launched
    assert (pipeline.calls, pipeline.kill_reason) == (0, None)
    assert runtime.occupancy().idle == 1


def test_a_call_cancelled_before_it_registers_raises_cancelled_without_a_pipeline(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)
    started: list[bool] = []

    with pytest.raises(Cancelled) as caught:
        runtime.call({}, on_start=lambda: started.append(True), cancelled=lambda: True)

    assert caught.value.message == "the call was cancelled before it started"
    assert launcher.launched == []
    assert started == []
    assert runtime.occupancy() == PoolSnapshot(starting=0, idle=0, busy=0, queued=0)
    assert nonzero_counters(runtime) == {"calls": 1, "failed": 1}


def test_on_start_runs_once_the_call_has_its_pipeline(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)
    seen: list[int] = []

    runtime.call({}, on_start=lambda: seen.append(launcher.launched[0].calls))

    assert seen == [0]  # before the call was sent
    assert launcher.launched[0].calls == 1


# -- exits, retirement and shutdown ---------------------------------------------------------------------


def test_on_exit_of_an_idle_pipeline_removes_it_so_that_no_call_is_sent_to_it(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)
    gone = launcher.launched[0]

    assert runtime.on_exit(gone.pid, 9) is True  # killed from outside while idle

    assert gone.reported_exits == [9]
    wait_until(lambda: runtime.occupancy().idle == 1, what="a replacement pipeline")
    result = runtime.call({})
    assert json.loads(result.envelope())["apiContext"]["pipelineId"] == "svc-ep-2"
    assert gone.calls == 0


def test_on_exit_of_another_endpoints_pid_returns_false(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)

    assert runtime.on_exit(launcher.launched[0].pid + 1_000_000, 0) is False
    assert runtime.occupancy().idle == 1


def test_pipelines_above_cruise_are_retired_once_the_pool_is_quiet(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)

    runtime.call({})

    (pipeline,) = launcher.launched
    assert (pipeline.retired, pipeline.kill_reason) == (True, KillReason.RETIRED)
    assert runtime.status()["pipelines"]["total"] == 0


def test_a_retired_pipeline_is_let_go_and_its_late_exit_report_is_harmless(make_runtime: MakeRuntime) -> None:
    # A let-go pipeline gives back its descriptors at once (Pipeline.retire/kill release them): its exit,
    # reported later by the fork server, is not this endpoint's business any more.
    launcher = FakeLauncher()
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)
    runtime.call({})
    (pipeline,) = launcher.launched
    assert pipeline.retired

    assert runtime.on_exit(pipeline.pid, 0) is False
    assert runtime.call({"again": True}).result == b'{"again": true}'


def test_a_call_given_a_pipeline_that_already_died_is_served_by_another(make_runtime: MakeRuntime) -> None:
    # The pipeline died while idle, and the call reached the pool before its exit was reported.
    launcher = FakeLauncher()
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher), idle=1)
    (dead,) = launcher.launched
    dead.killed.set()  # dead, and nobody told the runtime

    result = runtime.call({"x": 1})

    assert json.loads(result.result) == {"x": 1}
    assert result.api_context["pipelineId"] == "svc-ep-2"
    assert dead.calls == 0
    assert runtime.status()["counters"]["crashes"] == 0


def test_close_kills_every_pipeline_fails_waiting_calls_and_joins_the_starters(make_runtime: MakeRuntime) -> None:
    gates = {"busy": Gate()}
    never = Gate()

    def make(label: str) -> FakePipeline:
        if label == "svc-ep-1":
            return FakePipeline(label, handler_with_gates(gates))
        return FakePipeline(label, start_gate=never)  # still starting at close

    launcher = FakeLauncher(make)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=2, queue=1, timeout_ms=60_000), launcher), idle=1)
    busy = call_in_background(runtime, "busy")
    assert gates["busy"].reached.wait(5)
    cold = call_in_background(runtime, "cold")
    assert never.reached.wait(5)
    queued = call_in_background(runtime, "queued")
    wait_until(lambda: runtime.occupancy().queued == 1, what="a queued call")

    runtime.close()

    assert starters_alive() == []
    assert [pipeline.kill_reason for pipeline in launcher.launched] == [KillReason.SHUTDOWN, KillReason.SHUTDOWN]
    assert isinstance(busy.error(), PipelineCrashed)
    assert isinstance(cold.error(), PipelineCrashed)
    error = queued.error()
    assert isinstance(error, PipelineCrashed)
    assert error.message == "the emulator is shutting down"


def test_a_call_after_close_fails_at_once(make_runtime: MakeRuntime) -> None:
    launcher = FakeLauncher()
    runtime = make_runtime(Pool(floor=0, cruise=0, ceil=1, queue=0), launcher)
    runtime.close()

    late = call_in_background(runtime, "late")

    def stuck() -> bool:  # waiting for a start no thread will ever make
        return runtime.occupancy().starting == 1 and not starters_alive() and not late.done.is_set()

    try:
        wait_until(lambda: late.done.is_set() or stuck(), what="the late call to end or get stuck")
        assert isinstance(late.error(timeout_s=0), PipelineCrashed)
    finally:
        for ticket in list(runtime._tickets.values()):  # release the stuck thread
            ticket.error = PipelineCrashed("released by the test")
            ticket.event.set()
        late.done.wait(5)


def test_cancel_of_a_call_that_just_ended_leaves_the_next_call_on_its_pipeline_alone(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate(), "b": Gate()}

    def handle(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        gates[arguments["n"]].wait(pipeline)
        if arguments["n"] == "a":
            raise BadRequest("a fails")
        return {"n": arguments["n"]}

    launcher = launcher_with(handle)
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=1, timeout_ms=60_000), launcher), idle=1)
    # Hold call "a" just after its pipeline went back to the pool (where it counts its failure).
    a_ending, release_a = threading.Event(), threading.Event()
    failed = runtime.stats.failed

    def count_and_hold(error: Any, pipeline: Any = None) -> None:
        failed(error, pipeline)
        if threading.current_thread().name == "test-call-a":
            a_ending.set()
            release_a.wait(5)

    runtime.stats.failed = count_and_hold  # type: ignore[method-assign]
    a = call_in_background(runtime, "a", request_id="task-a")
    assert gates["a"].reached.wait(5)
    b = call_in_background(runtime, "b", request_id="task-b")
    wait_until(lambda: runtime.occupancy().queued == 1, what="a queued call")
    gates["a"].open()
    try:
        assert a_ending.wait(5)
        assert gates["b"].reached.wait(5)  # "b" now runs on the pipeline "a" used

        runtime.cancel("task-a")  # a cancel that arrives as "a" ends
        gates["b"].open()

        assert json.loads(b.result().envelope())["response"] == {"n": "b"}
        assert launcher.launched[0].kill_reason is None
    finally:
        release_a.set()
        gates["b"].open()
        assert isinstance(a.error(), BadRequest)
        b.done.wait(5)


# -- status ----------------------------------------------------------------------------------------------


def test_status_reports_pool_pipelines_queue_counters_and_latency(make_runtime: MakeRuntime) -> None:
    gates = {"busy": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    pool = Pool(floor=2, cruise=2, ceil=3, queue=4, timeout_ms=500)
    runtime = loaded(make_runtime(pool, launcher, timeout_s=7, memory_mb=256), idle=2)
    runtime.call({"n": "done"})
    busy = call_in_background(runtime, "busy")
    assert gates["busy"].reached.wait(5)

    status = runtime.status()

    processes = {process["pipelineId"]: process for process in status["pipelines"].pop("processes")}
    pids = {pipeline.label: pipeline.pid for pipeline in launcher.launched}
    assert sorted(processes) == ["svc-ep-1", "svc-ep-2"]
    (busy_label,) = [label for label, process in processes.items() if process["state"] == "busy"]
    (idle_label,) = set(processes) - {busy_label}
    # the pipeline that served the first call was the most recently used: it serves the second one too
    assert processes[busy_label] == {
        "pipelineId": busy_label,
        "pid": pids[busy_label],
        "state": "busy",
        "calls": 2,
        "initMs": 0.001,
        "rssBytes": MiB,
    }
    assert processes[idle_label] == {
        "pipelineId": idle_label,
        "pid": pids[idle_label],
        "state": "idle",
        "calls": 0,
        "initMs": 0.001,
        "rssBytes": MiB,
    }
    assert status == {
        "serviceId": "svc",
        "endpointId": "ep",
        "pool": {"floor": 2, "ceil": 3, "cruise": 2, "queue": 4, "timeout_ms": 500},
        "timeoutS": 7,
        "memoryMb": 256,
        "pipelines": {"starting": 0, "idle": 1, "busy": 1, "total": 2},
        "queue": {"depth": 0, "limit": 4, "timeoutMs": 500},
        "counters": {
            "calls": 2,
            "succeeded": 1,
            "failed": 0,
            "coldStarts": 0,
            "queueFull": 0,
            "queueTimeout": 0,
            "timeouts": 0,
            "initReruns": 0,
            "gatewayTimeouts": 0,
            "crashes": 0,
            "outOfMemory": 0,
            "eventsDelivered": 0,
            "asyncRetries": 0,
            "eventsFailed": 0,
        },
        "latencyMs": {"p50": 0.0, "p90": 0.0, "p99": 0.0},
        "trigger": None,
        "lastError": None,
        "recentErrors": [],
    }
    gates["busy"].open()
    busy.result()


# -- a caller that gives up (API Gateway's integration timeout) ------------------------------------------
# On the real clock: the caller's bound is a real wait.


def detached_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("lambdapool-detached-")]


def test_a_caller_giving_up_on_a_running_call_gets_gateway_timeout_and_the_call_goes_on(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=1), launcher, clock=time.monotonic), idle=1)

    with pytest.raises(GatewayTimeout) as raised:
        runtime.call({"n": "a"}, give_up_after_s=0.05)

    assert (raised.value.status, raised.value.to_body()) == (504, {"message": "Endpoint request timed out"})
    assert gates["a"].reached.is_set() and not launcher.launched[0].killed.is_set()  # still running
    assert runtime.occupancy().busy == 1
    assert nonzero_counters(runtime) == {"calls": 1, "gatewayTimeouts": 1}
    gates["a"].open()
    wait_until(lambda: counters(runtime)["succeeded"] == 1, what="the call's own end, counted")
    wait_until(lambda: detached_threads() == [], what="the detached call's thread to end")
    assert runtime.occupancy().idle == 1  # the pipeline went back to the pool, and serves the next call
    assert runtime.call({"n": "b"}, give_up_after_s=5).result == b'{"n": "b"}'


def test_a_caller_giving_up_on_a_queued_call_leaves_it_in_the_queue_to_run_in_turn(make_runtime: MakeRuntime) -> None:
    gates = {"a": Gate(), "b": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    pool = Pool(floor=1, cruise=1, ceil=1, queue=1, timeout_ms=60_000)
    runtime = loaded(make_runtime(pool, launcher, clock=time.monotonic), idle=1)
    busy = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)

    with pytest.raises(GatewayTimeout):
        runtime.call({"n": "b"}, give_up_after_s=0.05)

    assert runtime.occupancy().queued == 1
    gates["a"].open()
    busy.result()
    assert gates["b"].reached.wait(5)  # the queued call got the pipeline in its turn and runs
    gates["b"].open()
    wait_until(lambda: counters(runtime)["succeeded"] == 2, what="both calls, counted")
    assert launcher.launched[0].calls == 2


def test_a_call_that_fails_after_its_caller_gave_up_is_counted_failed(make_runtime: MakeRuntime) -> None:
    gate = Gate()

    def fail_when_opened(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
        gate.wait(pipeline)
        raise FunctionError.of(ValueError("late"), "Traceback: ValueError: late")

    runtime = loaded(
        make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher_with(fail_when_opened), clock=time.monotonic),
        idle=1,
    )
    with pytest.raises(GatewayTimeout):
        runtime.call({}, give_up_after_s=0.05)
    gate.open()

    wait_until(lambda: counters(runtime)["failed"] == 1, what="the late failure, counted")
    assert nonzero_counters(runtime) == {"calls": 1, "failed": 1, "gatewayTimeouts": 1}


def test_close_ends_a_call_going_on_after_its_caller_gave_up(make_runtime: MakeRuntime) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher, clock=time.monotonic), idle=1)
    with pytest.raises(GatewayTimeout):
        runtime.call({"n": "a"}, give_up_after_s=0.05)
    assert detached_threads() != []

    runtime.close()

    assert detached_threads() == []  # joined by close
    assert launcher.launched[0].kill_reason is KillReason.SHUTDOWN


def test_a_caller_giving_up_as_the_runtime_closes_leaves_no_thread_behind(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = {"a": Gate()}
    launcher = launcher_with(handler_with_gates(gates))
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), launcher, clock=time.monotonic), idle=1)
    detach = runtime._detach

    def close_first(ticket: Any, rest: Any) -> None:  # forces the interleaving: close() runs, then the hand-off
        runtime.close()
        detach(ticket, rest)

    monkeypatch.setattr(runtime, "_detach", close_first)

    with pytest.raises(GatewayTimeout):
        runtime.call({"n": "a"}, give_up_after_s=0.05)

    assert detached_threads() == []  # the hand-off finished the call where it was (it failed at once)
    assert counters(runtime)["failed"] == 1


def test_a_call_answered_within_the_bound_is_not_cut(make_runtime: MakeRuntime) -> None:
    runtime = loaded(make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=0), clock=time.monotonic), idle=1)

    assert runtime.call({"n": "a"}, give_up_after_s=5).result == b'{"n": "a"}'
    assert nonzero_counters(runtime) == {"calls": 1, "succeeded": 1}
    assert detached_threads() == []


# -- a reload replaces the pool -----------------------------------------------------------------------------


def test_drain_waits_for_the_calls_in_the_pool_and_a_superseded_pool_sends_late_calls_on(
    make_runtime: MakeRuntime,
) -> None:
    gates = {"a": Gate()}
    runtime = loaded(
        make_runtime(Pool(floor=1, cruise=1, ceil=1, queue=1), launcher_with(handler_with_gates(gates))), idle=1
    )
    running = call_in_background(runtime, "a")
    assert gates["a"].reached.wait(5)

    assert runtime.drain(0.05) is False  # a call is still running
    gates["a"].open()
    assert runtime.drain(5) is True
    assert running.result().result == b'{"n": "a"}'

    runtime.supersede()
    with pytest.raises(Superseded):
        runtime.call({"n": "late"})
    assert nonzero_counters(runtime) == {"calls": 1, "succeeded": 1}  # not counted here: its caller sends it on


def test_a_call_that_arrived_during_its_pipelines_start_counts_only_the_rest_of_it_as_cold() -> None:
    """A floor pipeline starting when the endpoint loads: a call arriving 150 ms into its 200 ms init waited
    50 ms of cold start, and its timing adds up to its total."""
    from lambdapool._model import EndpointSpec
    from lambdapool.emulator.pool._calls import Ticket

    spec = EndpointSpec(service_id="svc", endpoint_id="ep")
    ticket = Ticket("req-1", arrived=10.0)
    ticket.cold = True
    result = CallResult.of(spec, ticket, "svc-ep-1", b"1", {"executionMs": 9.0}, 10.05, 200.0, 10.06)

    assert result.timing == {"wait": 0.0, "coldStart": 50.0, "execution": 9.0, "total": 60.0}
    queued = CallResult.of(spec, ticket, "svc-ep-1", b"1", {"executionMs": 9.0}, 10.5, 200.0, 10.51)
    assert queued.timing["coldStart"] == 200.0 and queued.timing["wait"] == 300.0
