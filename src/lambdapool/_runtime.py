"""The process layer of one endpoint: pipelines, tickets and the thin shell around :class:`PoolCore`.

Every decision (start, queue, reject, retire, replace) is taken by :class:`~lambdapool._pool.PoolCore`;
this module carries the decisions out with real processes and wakes the HTTP threads waiting on them.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from ._errors import (
    Cancelled,
    LambdapoolError,
    OutOfMemory,
    PipelineCrashed,
    QueueFull,
    QueueTimeout,
    Timeout,
    error_from_body,
)
from ._model import ParameterSpec, Pool, Trigger
from ._pool import Action, Dispatch, Fail, PipelineState, PoolCore, Reject, RejectReason, Retire, Start
from ._wire import ChannelClosed, FrameReader, send_frame

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: Latency histogram buckets for /metrics, in seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """What the emulator knows of an endpoint without importing the app (from the describe step)."""

    service_id: str
    endpoint_id: str
    pool: Pool
    timeout_s: int
    memory_mb: int
    description: str
    outputs: tuple[str, ...] | None
    parameters: ParameterSpec
    inline: bool = False
    trigger: Trigger | None = None

    @classmethod
    def from_description(cls, data: dict[str, Any], pool: Pool) -> EndpointSpec:
        return cls(
            service_id=data["serviceId"],
            endpoint_id=data["endpointId"],
            pool=pool,
            timeout_s=int(data["timeoutS"]),
            memory_mb=int(data["memoryMb"]),
            description=data.get("description", ""),
            outputs=tuple(data["outputs"]) if data.get("outputs") is not None else None,
            parameters=ParameterSpec.from_dict(data["parameters"]),
            inline=bool(data.get("inline", False)),
            trigger=Trigger.from_dict(data["trigger"]) if data.get("trigger") else None,
        )

    @property
    def lambda_name(self) -> str:
        return f"{self.service_id}-{self.endpoint_id}"


def read_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (what Lambda counts), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def nearest_rank(ordered: list[float], quantile: float) -> float:
    """The ``quantile`` of sorted, non-empty ``ordered`` by the nearest-rank method, rounded to 3 decimals."""
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))], 3)


def describe_exit(status: int | None) -> str:
    """A ``waitpid`` status in words."""
    if status is None:
        return "the pipeline process ended"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"the pipeline process was killed by {name}"
    return f"the pipeline process exited with code {os.WEXITSTATUS(status)}"


class Pipeline:
    """One running pipeline process, seen from the emulator. One call at a time."""

    def __init__(self, pool_id: int, label: str, pid: int, sock: socket.socket, init_ms: float):
        self.pool_id = pool_id
        self.label = label
        self.pid = pid
        self.init_ms = init_ms
        self.calls = 0
        self.started_at = time.time()
        self.kill_reason: str | None = None  # "timeout", "oom", "retired" or "shutdown" once we end it
        self.call_deadline: float | None = None  # time.monotonic() by which the running call must end
        self.exit_status: int | None = None
        self.exited = threading.Event()
        self._sock = sock
        self.reader = FrameReader(sock)
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError:
                self._pidfd = None

    def call(self, header: dict[str, Any], payload: bytes, deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send a call and wait for its reply.

        The socket blocks without a timeout (a timeout would cost a ``poll`` per read): the supervisor kills
        the process once ``deadline`` (a ``time.monotonic()`` time) passes, which ends the wait. Raises
        :class:`ChannelClosed` or ``OSError`` if the process died or was killed.
        """
        self.calls += 1
        self.call_deadline = deadline
        try:
            send_frame(self._sock, header, payload)
            return self.reader.read()
        finally:
            self.call_deadline = None

    def kill(self, reason: str) -> None:
        """End the process now (SIGKILL) and remember why."""
        if self.kill_reason is None:
            self.kill_reason = reason
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif not self.exited.is_set():
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        self.close()

    def retire(self) -> None:
        """Ask an idle pipeline to end: closing its socket makes it exit cleanly."""
        self.kill_reason = self.kill_reason or "retired"
        self.close()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def mark_exited(self, status: int) -> None:
        self.exit_status = status
        self.exited.set()
        if self._pidfd is not None:
            try:
                os.close(self._pidfd)
            except OSError:
                pass
            self._pidfd = None


class _Ticket:
    """A request's place in the pool: how the HTTP thread learns which pipeline serves it."""

    __slots__ = ("arrived", "cancelled", "cold", "error", "event", "on_start", "pipeline_id", "request_id")

    def __init__(self, request_id: str, arrived: float, on_start: Callable[[], object] | None = None):
        self.request_id = request_id
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

    def timing_json(self) -> bytes:
        return json.dumps(self.timing, separators=(",", ":")).encode()

    def api_context_json(self) -> bytes:
        return json.dumps(self.api_context, separators=(",", ":")).encode()


class EndpointStats:
    """Counters and latencies of one endpoint (for /__lambdapool__/status and /metrics). Thread-safe."""

    COUNTERS = (
        "calls",
        "succeeded",
        "failed",
        "coldStarts",
        "queueFull",
        "queueTimeout",
        "timeouts",
        "crashes",
        "outOfMemory",
        "eventsDelivered",
        "eventsFailed",
    )

    def __init__(self, sample_size: int = 2048):
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self._recent_ms: deque[float] = deque(maxlen=sample_size)
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        self.last_error: dict[str, Any] | None = None

    def event_failed(self, error: LambdapoolError) -> None:
        """Count a trigger event whose delivery failed, and keep its error for the status page."""
        with self._lock:
            self.counters["eventsFailed"] += 1
            self.last_error = {**error.to_body(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def succeeded(self, total_ms: float) -> None:
        """Count a successful call and its total time."""
        with self._lock:
            self.counters["succeeded"] += 1
            self._recent_ms.append(total_ms)
            self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS_S, total_ms / 1000)] += 1
            self.latency_sum_s += total_ms / 1000

    def percentiles(self) -> dict[str, float | None]:
        with self._lock:
            ordered = sorted(self._recent_ms)
        if not ordered:
            return {"p50": None, "p90": None, "p99": None}
        return {f"p{round(q * 100)}": nearest_rank(ordered, q) for q in (0.5, 0.9, 0.99)}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "buckets": list(self.bucket_counts),
                "sum_s": self.latency_sum_s,
            }


Launcher = Callable[["EndpointRuntime", int], tuple[int, socket.socket]]


class EndpointRuntime:
    """One endpoint's pool of real pipelines. Thread-safe; the HTTP threads call :meth:`call`.

    ``launch(runtime, pool_id)`` forks a pipeline and returns its pid and socket; the runtime waits for it
    to report ``ready`` (at most ``start_timeout_s``).
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
        self._start_timeout_s = start_timeout_s if start_timeout_s is not None else max(10.0, float(spec.timeout_s))
        self._clock = clock
        self._lock = threading.Lock()
        self._core = PoolCore(spec.pool)
        self._tickets: dict[str, _Ticket] = {}
        self._pipelines: dict[int, Pipeline] = {}
        self._start_errors: dict[int, LambdapoolError] = {}
        self._closed = False
        self._memory_limit_bytes = spec.memory_mb * 2**20
        self._id_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)

    # -- public ---------------------------------------------------------------------------------------

    def load(self) -> None:
        """Start the ``floor`` pipelines (in the background)."""
        with self._lock:
            actions = self._core.load(self._clock())
        self._execute(actions)

    def call(
        self,
        arguments: dict[str, Any],
        payload: bytes | None = None,
        may_queue: bool = True,
        request_id: str | None = None,
        on_start: Callable[[], object] | None = None,
    ) -> CallResult:
        """Run one call with bound ``arguments`` through the pool; raises a :class:`LambdapoolError`.

        ``payload`` is ``arguments`` as JSON, when the caller already has it. With ``may_queue`` false a call
        that finds ``ceil`` pipelines busy is rejected at once (:class:`QueueFull`), as Lambda throttles.
        ``request_id`` names the call for :meth:`cancel`; ``on_start`` is called once it has a pipeline.
        """
        request_id = request_id or f"{self._id_prefix}-{next(self._request_numbers)}"
        ticket = _Ticket(request_id, self._clock(), on_start)
        self.stats.count("calls")
        with self._lock:
            self._tickets[request_id] = ticket
            actions = self._core.arrive(request_id, ticket.arrived, may_queue)
        self._execute(actions)
        try:
            self._wait_for_pipeline(ticket)
            if ticket.error is not None:
                raise ticket.error
            assert ticket.pipeline_id is not None
            result = self._run_on(ticket, payload if payload is not None else json.dumps(arguments).encode())
        except LambdapoolError:
            self.stats.count("failed")
            raise
        finally:
            with self._lock:
                self._tickets.pop(request_id, None)
        self.stats.succeeded(result.timing["total"])
        return result

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
            ticket.error = Cancelled("the call was cancelled while it waited in the queue")
            ticket.event.set()
        elif pipeline is not None:
            pipeline.kill("cancelled")
        return True

    def status(self) -> dict[str, Any]:
        """Pool settings, pipelines, queue depth, counters and latency percentiles."""
        with self._lock:
            snapshot = self._core.snapshot()
            pipelines = [
                {
                    "pipelineId": pipeline.label,
                    "pid": pipeline.pid,
                    "state": state.value if (state := self._core.state_of(pool_id)) else "stopping",
                    "calls": pipeline.calls,
                    "initMs": round(pipeline.init_ms, 3),
                    "rssBytes": read_rss_bytes(pipeline.pid),
                }
                for pool_id, pipeline in self._pipelines.items()
            ]
        stats = self.stats.snapshot()
        return {
            "serviceId": self.spec.service_id,
            "endpointId": self.spec.endpoint_id,
            "pool": self.spec.pool.to_dict(),
            "timeoutS": self.spec.timeout_s,
            "memoryMb": self.spec.memory_mb,
            "pipelines": {
                "starting": snapshot.starting,
                "idle": snapshot.idle,
                "busy": snapshot.busy,
                "total": snapshot.starting + snapshot.idle + snapshot.busy,
                "processes": pipelines,
            },
            "queue": {
                "depth": snapshot.queued,
                "limit": self.spec.pool.queue,
                "timeoutMs": self.spec.pool.timeout_ms,
            },
            "counters": stats["counters"],
            "latencyMs": self.stats.percentiles(),
            "trigger": self.spec.trigger.to_dict() if self.spec.trigger is not None else None,
            "lastError": self.stats.last_error,
        }

    def supervise(self, now: float) -> None:
        """Kill every running pipeline whose call is past its deadline (``now`` is ``time.monotonic()``) or
        whose resident memory is over ``memory_mb``. Idle pipelines are skipped: they can neither grow nor
        run late. Called periodically by the emulator's supervisor thread."""
        with self._lock:
            running = [
                pipeline
                for pool_id, pipeline in self._pipelines.items()
                if self._core.state_of(pool_id) is not PipelineState.IDLE and pipeline.kill_reason is None
            ]
        for pipeline in running:
            deadline = pipeline.call_deadline
            if deadline is not None and now > deadline:
                pipeline.kill("timeout")
                continue
            rss = read_rss_bytes(pipeline.pid)
            if rss is not None and rss > self._memory_limit_bytes:
                pipeline.kill("oom")

    def on_exit(self, pid: int, status: int) -> bool:
        """The fork server reports that ``pid`` ended; returns whether it was one of this endpoint's."""
        with self._lock:
            pipeline = next((p for p in self._pipelines.values() if p.pid == pid), None)
            if pipeline is None:
                return False
            died_idle = pipeline.kill_reason is None and self._core.state_of(pipeline.pool_id) is PipelineState.IDLE
        pipeline.mark_exited(status)
        if died_idle:  # killed from outside while idle: forget it so that no call is sent to it
            self._finish(pipeline, healthy=False)
        return True

    def close(self) -> None:
        """Kill every pipeline and fail every waiting request."""
        with self._lock:
            self._closed = True
            pipelines = list(self._pipelines.values())
            tickets = list(self._tickets.values())
        for pipeline in pipelines:
            pipeline.kill("shutdown")
        for ticket in tickets:
            if not ticket.event.is_set():
                ticket.error = PipelineCrashed("the emulator is shutting down")
                ticket.event.set()

    # -- internals ------------------------------------------------------------------------------------

    def _wait_for_pipeline(self, ticket: _Ticket) -> None:
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

    def _run_on(self, ticket: _Ticket, payload: bytes) -> CallResult:
        assert ticket.pipeline_id is not None
        with self._lock:
            pipeline = self._pipelines[ticket.pipeline_id]
        dispatched = self._clock()
        cold_ms = pipeline.init_ms if ticket.cold else 0.0
        header = {
            "op": "call",
            "requestId": ticket.request_id,
            "deadline": time.time() + self.spec.timeout_s,
            "cold": ticket.cold,
        }
        if ticket.cold:
            self.stats.count("coldStarts")
        healthy = False
        try:
            if ticket.cancelled:  # cancelled while its pipeline was starting: give the pipeline back unused
                healthy = True
                raise Cancelled("the call was cancelled before it started")
            if ticket.on_start is not None:
                ticket.on_start()
            try:
                reply, result = pipeline.call(header, payload, time.monotonic() + self.spec.timeout_s)
            except (ChannelClosed, OSError, ValueError):
                raise self._death_error(pipeline) from None
            if reply.get("peakRssBytes", 0) > self._memory_limit_bytes:
                pipeline.kill("oom")
                raise self._death_error(pipeline)
            if reply["op"] == "error":
                error = error_from_body(reply["error"])
                if isinstance(error, OutOfMemory):  # MemoryError in the function: the pipeline exits
                    self.stats.count("outOfMemory")
                    raise error
                healthy = True
                raise error
            healthy = True
        finally:
            self._finish(pipeline, healthy)
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

    def _death_error(self, pipeline: Pipeline) -> LambdapoolError:
        """What to answer for a call whose pipeline died under it (or was killed for it)."""
        if pipeline.kill_reason == "cancelled":
            return Cancelled(
                f"the call was cancelled while running; pipeline {pipeline.label} was killed and is replaced"
            )
        if pipeline.kill_reason == "timeout":
            self.stats.count("timeouts")
            return Timeout(
                f"{self.spec.service_id}/{self.spec.endpoint_id} ran longer than timeout_s={self.spec.timeout_s}",
                f"the call was stopped after {self.spec.timeout_s} s; its pipeline ({pipeline.label}) was "
                "killed and is replaced",
            )
        if pipeline.kill_reason == "oom":
            self.stats.count("outOfMemory")
            return OutOfMemory(
                f"{self.spec.service_id}/{self.spec.endpoint_id} used more than memory_mb={self.spec.memory_mb}",
                f"the pipeline's resident memory went over {self.spec.memory_mb} MB; it was killed and is replaced",
            )
        pipeline.exited.wait(2.0)  # the exit status arrives from the fork server just after the socket closes
        self.stats.count("crashes")
        how = describe_exit(pipeline.exit_status)
        return PipelineCrashed(
            f"the pipeline died during the call: {how}",
            f"{how} while running {self.spec.service_id}/{self.spec.endpoint_id} (pipeline {pipeline.label}); "
            "it is replaced. Check the emulator's output for what the function printed.",
        )

    def _finish(self, pipeline: Pipeline, healthy: bool) -> None:
        with self._lock:
            if self._core.state_of(pipeline.pool_id) is None:
                return
            if healthy and pipeline.kill_reason is None:
                actions = self._core.done(pipeline.pool_id, self._clock())
            else:
                self._pipelines.pop(pipeline.pool_id, None)
                actions = self._core.lost(pipeline.pool_id, self._clock())
        if not healthy:
            pipeline.kill(pipeline.kill_reason or "crashed")
        self._execute(actions)

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Start):
                if self._closed:
                    continue
                threading.Thread(
                    target=self._start_pipeline,
                    args=(action.pipeline_id,),
                    name=f"lambdapool-start-{self.spec.lambda_name}-{action.pipeline_id}",
                    daemon=True,
                ).start()
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
                ticket = self._tickets.get(str(action.request_id))
                if ticket is not None:
                    ticket.error = self._start_errors.pop(action.pipeline_id, None) or PipelineCrashed(
                        "the pipeline failed to start"
                    )
                    ticket.event.set()
                else:
                    self._start_errors.pop(action.pipeline_id, None)
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
            self.stats.count("queueFull")
            ticket.error = QueueFull(
                f"{self.spec.service_id}/{self.spec.endpoint_id}: all {pool.ceil} pipelines are busy and "
                f"{pool.queue} requests already wait",
                f"the queue is full (ceil={pool.ceil}, queue={pool.queue}); retry after {retry_after_s} s",
                retry_after_s=retry_after_s,
            )
        else:
            self.stats.count("queueTimeout")
            ticket.error = QueueTimeout(
                f"{self.spec.service_id}/{self.spec.endpoint_id}: no pipeline became free within "
                f"timeout_ms={pool.timeout_ms}",
                f"the request waited {pool.timeout_ms} ms in the queue; retry after {retry_after_s} s",
                retry_after_s=retry_after_s,
            )
        ticket.event.set()

    def _retry_after_s(self) -> int:
        """A hint for throttled callers: the queue's expected drain time, at least one second."""
        p50_ms = self.stats.percentiles()["p50"] or 0.0
        with self._lock:
            waiting = self._core.snapshot().queued + 1
        return max(1, math.ceil(p50_ms / 1000 * waiting / self.spec.pool.ceil))

    def _start_pipeline(self, pool_id: int) -> None:
        label = f"{self.spec.lambda_name}-{pool_id}"
        started = self._clock()
        try:
            pid, sock = self._launch(self, pool_id)
        except Exception as exc:
            self._start_failed(pool_id, PipelineCrashed(f"could not start a pipeline: {exc}"))
            return
        pipeline = Pipeline(pool_id, label, pid, sock, init_ms=0.0)
        with self._lock:
            if self._closed:
                pipeline.kill("shutdown")
                return
            self._pipelines[pool_id] = pipeline
        error = self._await_ready(pipeline)
        if error is not None:
            with self._lock:
                self._pipelines.pop(pool_id, None)
            pipeline.kill(pipeline.kill_reason or "failed")
            self._start_failed(pool_id, error)
            return
        pipeline.init_ms = max((self._clock() - started) * 1000, 0.001)
        with self._lock:
            actions = self._core.ready(pool_id, self._clock())
        self._execute(actions)

    def _await_ready(self, pipeline: Pipeline) -> LambdapoolError | None:
        where = f"{self.spec.service_id}/{self.spec.endpoint_id}"
        try:
            pipeline.reader.sock.settimeout(self._start_timeout_s)
            header, _ = pipeline.reader.read()
            pipeline.reader.sock.settimeout(None)  # calls block; the supervisor enforces their deadlines
        except TimeoutError:
            pipeline.kill("timeout")
            self.stats.count("timeouts")
            return Timeout(
                f"{where}: app.py's init code did not finish within {self._start_timeout_s:g} s",
                "the pipeline was killed while starting",
            )
        except (ChannelClosed, OSError, ValueError):
            if pipeline.kill_reason == "oom":
                return self._death_error(pipeline)
            pipeline.exited.wait(2.0)
            self.stats.count("crashes")
            return PipelineCrashed(
                f"{where}: the pipeline died while starting: {describe_exit(pipeline.exit_status)}",
            )
        if header.get("op") == "init_error":
            self.stats.count("crashes")
            body = header["error"]
            return PipelineCrashed(body["message"], body["detailedMessage"])
        if header.get("peakRssBytes", 0) > self._memory_limit_bytes:
            pipeline.kill("oom")
            return self._death_error(pipeline)
        return None

    def _start_failed(self, pool_id: int, error: LambdapoolError) -> None:
        with self._lock:
            self._start_errors[pool_id] = error
            actions = self._core.start_failed(pool_id, self._clock())
        self._execute(actions)
