"""A call's records as it goes through a pool: its place (:class:`Ticket`) and its result (:class:`CallResult`)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections.abc import Callable
from typing import Any

from ..._errors import LambdapoolError, QueueFull, QueueTimeout
from ..._model import EndpointSpec


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
        "tail",
    )

    def __init__(
        self,
        request_id: str,
        arrived: float,
        on_start: Callable[[], object] | None = None,
        lambda_event: bool = False,
        payload: bytes = b"{}",
        may_queue: bool = True,
        tail: bool = False,
    ):
        self.request_id = request_id
        self.tail = tail
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


@dataclasses.dataclass(frozen=True)
class CallLog:
    """What ``LogType=Tail`` reports of a call: the function's output (its last 4 KB, when the call asked
    for it), how long it ran and the pipeline's peak memory."""

    output: str
    execution_ms: float
    peak_rss_bytes: int

    @classmethod
    def of(cls, reply: dict[str, Any]) -> CallLog:
        return cls(str(reply.get("log", "")), float(reply.get("executionMs", 0.0)), int(reply.get("peakRssBytes", 0)))


@dataclasses.dataclass
class CallResult:
    """A successful call: the result's JSON bytes, the envelope's ``timing`` and ``apiContext``, and the
    call's :class:`CallLog`."""

    result: bytes
    timing: dict[str, float]
    api_context: dict[str, Any]
    log: CallLog | None = None

    @classmethod
    def of(
        cls,
        spec: EndpointSpec,
        ticket: Ticket,
        pipeline_id: str,
        result: bytes,
        reply: dict[str, Any],
        dispatched: float,
        cold_ms: float,
        finished: float,
    ) -> CallResult:
        """The result of ``ticket``'s call on ``pipeline_id``, with its timing (from the pool's clock: it was
        dispatched, after a cold start of ``cold_ms`` (which it may have waited for only in part), and finished;
        the pipeline reports its execution)."""
        before_ms = max(0.0, (dispatched - ticket.arrived) * 1000)
        # A call that arrived while its pipeline was already starting (a floor filling up) waited only for the
        # rest of that start: count that part, so that wait + coldStart + execution stays within total.
        cold_ms = min(cold_ms, before_ms)
        waited_ms = before_ms - cold_ms
        return cls(
            result=result,
            timing={
                "wait": round(waited_ms, 3),
                "coldStart": round(cold_ms, 3),
                "execution": round(float(reply.get("executionMs", (finished - dispatched) * 1000)), 3),
                "total": round((finished - ticket.arrived) * 1000, 3),
            },
            api_context={
                "serviceId": spec.service_id,
                "endpointId": spec.endpoint_id,
                "pipelineId": pipeline_id,
                "coldStart": ticket.cold,
            },
            log=CallLog.of(reply),
        )

    def envelope(self) -> bytes:
        """The run route's 200 body, with the result spliced in without re-encoding it."""
        timing = json.dumps(self.timing, separators=(",", ":")).encode()
        api_context = json.dumps(self.api_context, separators=(",", ":")).encode()
        return b"".join((b'{"response":', self.result, b',"timing":', timing, b',"apiContext":', api_context, b"}"))


class Superseded(LambdapoolError):
    """The call reached a pool a reload has replaced (in the instant between the swap and its arrival): the
    caller sends it again to the pool that replaced it, found anew (or answers 404 if the endpoint went)."""

    status = 503
    error_type = "Reloading"

    @classmethod
    def by_reload(cls, where: str) -> Superseded:
        return cls(f"{where} was reloaded", "the project was reloaded while the call arrived: send it again")


def rejection(spec: EndpointSpec, queue_full: bool, p50_ms: float | None, waiting: int) -> LambdapoolError:
    """What a call the pool turned away is answered (:class:`QueueFull`, or :class:`QueueTimeout` after its
    wait), with a ``Retry-After`` hint: the queue's expected drain time (``waiting`` calls at the recent
    median), at least one second."""
    retry_after_s = max(1, math.ceil((p50_ms or 0.0) / 1000 * waiting / spec.pool.ceil))
    if queue_full:
        return QueueFull.pool_busy(spec.where, spec.pool.ceil, spec.pool.queue, retry_after_s)
    return QueueTimeout.waited(spec.where, spec.pool.timeout_ms, retry_after_s)
