"""In-memory stand-ins for pipeline processes, so that pools, deliveries and the HTTP surface are tested
without processes or sockets (the real ones are covered by tests/integration).

A :class:`FakePipeline` implements :class:`lambdapool.emulator.pool._pipeline.PipelineHandle`: a call runs a
Python handler in the calling thread; a handler may block on a :class:`Gate` until the test opens it, or
until the pipeline is killed (which then ends the call as a dead process would). :class:`ManualClock` is the
injected clock; :class:`Background` runs a call in a thread and :func:`wait_until` polls with a deadline, so
that no test sleeps to wait for something.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from lambdapool._errors import ChannelClosed, LambdapoolError
from lambdapool._model import EndpointSpec
from lambdapool.emulator.pool._pipeline import KillReason
from lambdapool.emulator.pool._runtime import EndpointRuntime

#: A handler gets the call's arguments and its pipeline; it returns a JSON value or raises a LambdapoolError.
Handler = Callable[[dict[str, Any], "FakePipeline"], Any]
_SIGKILL_STATUS = 9  # what waitpid reports for a process killed by SIGKILL
_DEFAULT_WAIT_S = 10.0
T = TypeVar("T")


class GateNeverOpened(AssertionError):
    """A :class:`Gate` was not opened in time (a test bug, or a start that never reports)."""


def echo(arguments: dict[str, Any], pipeline: FakePipeline) -> Any:
    """The default handler: answers with the call's arguments."""
    return arguments


class Gate:
    """A point where a fake call (or start) waits until the test opens it; ``reached`` is set once a thread
    waits there."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def wait(self, pipeline: FakePipeline, timeout_s: float = _DEFAULT_WAIT_S) -> None:
        """Wait until opened; raises :class:`ChannelClosed` if ``pipeline`` is killed meanwhile, and
        :class:`GateNeverOpened` (an ``AssertionError``) past ``timeout_s``."""
        self.reached.set()
        deadline = time.monotonic() + timeout_s
        while not self._open.wait(0.005):
            if pipeline.killed.is_set():
                raise ChannelClosed("the fake pipeline was killed")
            if time.monotonic() >= deadline:
                raise GateNeverOpened("a gate was never opened")


class FakePipeline:
    """A pipeline that runs ``handler`` in process. ``ready`` is its first report; ``start_gate`` holds its
    start until opened (a start still held after the runtime's start timeout raises ``TimeoutError``, as a
    pipeline that never reports does). ``rss`` is the resident memory it reports. The fake ends at once when
    killed; ``reported_exits`` lists the statuses the runtime passed to :meth:`mark_exited`."""

    _pids = itertools.count(10_000)

    def __init__(
        self,
        label: str,
        handler: Handler = echo,
        *,
        ready: dict[str, Any] | None = None,
        start_gate: Gate | None = None,
        rss: int = 2**20,
    ):
        self.label = label
        self.pid = next(self._pids)
        self.init_ms = 0.0
        self.calls = 0
        self.kill_reason: KillReason | None = None
        self.call_deadline: float | None = None
        self.init_rerun_at: float | None = None
        self.exit_status: int | None = None
        self.exited = threading.Event()
        self.killed = threading.Event()
        self.retired = False
        self.rss = rss
        self.handler = handler
        self.ready = ready if ready is not None else {"op": "ready", "peakRssBytes": rss}
        self.start_gate = start_gate
        self.headers: list[dict[str, Any]] = []
        self.frozen = False
        self.freezes = 0
        self.reported_exits: list[int] = []
        self._pending: Background[tuple[dict[str, Any], bytes]] | None = None

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        if self.start_gate is not None:
            try:
                self.start_gate.wait(self, timeout_s)
            except GateNeverOpened:
                raise TimeoutError(f"the fake pipeline did not report within {timeout_s:g} s") from None
        if self.killed.is_set():
            raise ChannelClosed("the fake pipeline was killed while starting")
        return self.ready

    def send(self, header: dict[str, Any], payload: bytes, deadline: float) -> None:
        """Start the call: ``handler`` runs in a thread of its own, as a pipeline runs apart from the caller."""
        if self.killed.is_set():
            raise ChannelClosed("the fake pipeline is dead")
        self.calls += 1
        self.call_deadline = deadline
        self.headers.append(header)
        self._pending = Background(lambda: self._answer(payload))

    def receive(self, wait_s: float | None) -> tuple[dict[str, Any], bytes] | None:
        pending = self._pending
        assert pending is not None, "receive() without a call sent"
        if not pending.done.wait(wait_s):
            return None
        self._pending = None
        self.call_deadline = None
        return pending.result()

    def _answer(self, payload: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            result = self.handler(json.loads(payload) if payload else {}, self)
        except LambdapoolError as error:
            return {"op": "error", "error": error.to_body(), "peakRssBytes": self.rss}, b""
        if self.killed.is_set():
            raise ChannelClosed("the fake pipeline was killed during the call")
        return {"op": "result", "executionMs": 0.5, "peakRssBytes": self.rss}, json.dumps(result).encode()

    def rss_bytes(self) -> int | None:
        return None if self.exited.is_set() else self.rss

    def freeze(self) -> None:
        self.frozen = True
        self.freezes += 1

    def thaw(self) -> None:
        self.frozen = False

    def kill(self, reason: KillReason) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        self.killed.set()
        self._end(_SIGKILL_STATUS)

    def retire(self) -> None:
        self.kill_reason = self.kill_reason or KillReason.RETIRED
        self.retired = True
        self.killed.set()
        self._end(0)

    def mark_exited(self, status: int) -> None:
        """The runtime passes on the exit the fork server reported (recorded in ``reported_exits``)."""
        self.reported_exits.append(status)
        self._end(status)

    def die(self, status: int = 256) -> None:
        """The process ends by itself (``status`` is a waitpid status: 256 is exit code 1)."""
        self.killed.set()
        self._end(status)

    def _end(self, status: int) -> None:
        if self.exit_status is None:
            self.exit_status = status
        self.exited.set()


class FakeLauncher:
    """Launches :class:`FakePipeline` s; ``make(label)`` builds each (by default an echo pipeline).
    ``launched`` lists them in start order."""

    def __init__(self, make: Callable[[str], FakePipeline] | None = None):
        self.make = make or (lambda label: FakePipeline(label))
        self.launched: list[FakePipeline] = []
        self._lock = threading.Lock()

    def __call__(self, pool_id: int, label: str) -> FakePipeline:
        pipeline = self.make(label)
        with self._lock:
            self.launched.append(pipeline)
        return pipeline


class ManualClock:
    """A monotonic clock the test moves (``advance``); starts at 1000 s. ``reads`` counts the times it was
    read, so that a test can wait until a thread has looked at it (:meth:`wait_for_reads`)."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.reads = 0
        self._read = threading.Condition()

    def __call__(self) -> float:
        with self._read:
            self.reads += 1
            self._read.notify_all()
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wait_for_reads(self, count: int, timeout_s: float = _DEFAULT_WAIT_S) -> None:
        """Wait until the clock has been read ``count`` times in all."""
        with self._read:
            if not self._read.wait_for(lambda: self.reads >= count, timeout_s):
                raise AssertionError(f"the clock was read {self.reads} times, not {count}, within {timeout_s} s")


def wait_until(predicate: Callable[[], T], timeout_s: float = _DEFAULT_WAIT_S, what: str = "a condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.002)


class Background(Generic[T]):
    """``function()`` running in its own thread; :meth:`result` waits for it and returns its value or
    raises what it raised."""

    def __init__(self, function: Callable[[], T], name: str = "test-background"):
        self._value: T | None = None
        self._error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(function,), name=name, daemon=True)
        self.thread.start()

    def _run(self, function: Callable[[], T]) -> None:
        try:
            self._value = function()
        except BaseException as error:
            self._error = error
        finally:
            self.done.set()

    def result(self, timeout_s: float = _DEFAULT_WAIT_S) -> T:
        if not self.done.wait(timeout_s):
            raise AssertionError(f"{self.thread.name} did not finish within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def error(self, timeout_s: float = _DEFAULT_WAIT_S) -> BaseException:
        """What the function raised (fails if it returned)."""
        if not self.done.wait(timeout_s):
            raise AssertionError(f"{self.thread.name} did not finish within {timeout_s} s")
        if self._error is None:
            raise AssertionError(f"{self.thread.name} returned {self._value!r} instead of raising")
        return self._error


def fake_runtime(spec: EndpointSpec, launcher: FakeLauncher | None = None, **options: Any) -> EndpointRuntime:
    """An :class:`EndpointRuntime` over fake pipelines (``options`` go to its constructor)."""
    return EndpointRuntime(spec, launcher or FakeLauncher(), **options)
