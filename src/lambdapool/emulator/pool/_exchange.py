"""One call on one pipeline: send it, wait for its reply, and answer it.

The wait may be bounded (a route's caller gives up at API Gateway's integration timeout): then
:class:`StillRunning` carries the rest of the exchange, which another thread finishes while the call runs on.
Whatever happens, the pipeline is released exactly once: given back to its pool after an answer, ended after
a death, a kill or a reply over the memory limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._errors import (
    Cancelled,
    ChannelClosed,
    LambdapoolError,
    OutOfMemory,
    ResponseSizeTooLarge,
    error_from_body,
)
from ..._limits import SYNC_RESPONSE_LIMIT_BYTES
from ..._model import EndpointSpec
from ._calls import CallLog, CallResult, Ticket
from ._metrics import Counter, EndpointStats
from ._pipeline import KillReason, PipelineHandle, ending


class StillRunning(Exception):
    """The caller stopped waiting for a call that goes on: ``rest()`` waits for it and answers it."""

    def __init__(self, rest: Callable[[], CallResult]):
        super().__init__("still running")
        self.rest = rest


class NotDelivered(Exception):
    """The pipeline was gone before the call reached it (its socket refused the call): the pool has it back as
    lost, and the call is to wait for another pipeline, as if it had never been given this one."""


class Exchange:
    """The call of ``ticket`` on ``pipeline`` (thawed), from the send to the answer.
    ``release(healthy)`` gives the pipeline back to its pool, or ends it, once the call is done with it."""

    def __init__(
        self,
        spec: EndpointSpec,
        stats: EndpointStats,
        clock: Callable[[], float],
        ticket: Ticket,
        pipeline: PipelineHandle,
        release: Callable[[bool], None],
    ):
        self._spec = spec
        self._stats = stats
        self._clock = clock
        self._ticket = ticket
        self._pipeline = pipeline
        self._release = release
        self._memory_limit_bytes = spec.memory_mb * 2**20
        self._dispatched = clock()
        self._cold_ms = pipeline.init_ms if ticket.cold else 0.0

    def run(self, payload: bytes, give_up_at: float | None = None) -> CallResult:
        """Send the call and answer it; raises its :class:`LambdapoolError`, :class:`StillRunning` if no
        reply came by ``give_up_at``, or :class:`NotDelivered`."""
        deadline = self._send(payload)
        if give_up_at is None or deadline <= give_up_at:  # the call ends (killed at worst) before the caller gives up
            return _answered(self._settle(None))
        outcome = self._settle(max(0.0, give_up_at - self._clock()))
        if outcome is None:
            raise StillRunning(lambda: _answered(self._settle(None)))
        return outcome

    def deadline(self) -> float:
        """When the call must end: ``timeout_s`` after it starts, or, for the call that waited for an init run
        again past Lambda's Init limit, after that init began (Lambda runs it within the call)."""
        started = self._clock()
        if self._ticket.cold and self._pipeline.init_rerun_at is not None:
            started = max(self._ticket.arrived, self._pipeline.init_rerun_at)
        return started + self._spec.timeout_s

    def _seconds_left(self, deadline: float) -> float:
        """The time the function is told it has: ``timeout_s``, less what an init run again took."""
        if self._ticket.cold and self._pipeline.init_rerun_at is not None:
            return max(0.0, round(deadline - self._clock(), 3))
        return self._spec.timeout_s

    def _send(self, payload: bytes) -> float:
        """Send the call; returns its deadline."""
        ticket, pipeline = self._ticket, self._pipeline
        deadline = self.deadline()
        header: dict[str, Any] = {
            "op": "call",
            "requestId": ticket.request_id,
            # what the function is told it has left (less than timeout_s after an init run again in the call)
            "timeoutS": self._seconds_left(deadline),
            "cold": ticket.cold,
        }
        if ticket.lambda_event:
            header["lambdaEvent"] = True
        if ticket.tail:
            header["tail"] = True
        sent = False
        healthy = True  # until the call is sent, the pipeline is untouched
        try:
            if ticket.cancelled:  # cancelled while its pipeline was starting: give the pipeline back unused
                raise Cancelled.before_start()
            if ticket.on_start is not None:
                ticket.on_start()
            healthy = False
            try:
                pipeline.send(header, payload, deadline)
            except (ChannelClosed, OSError, ValueError):  # what once cost a check before every call
                raise NotDelivered() from None
            sent = True
            if ticket.cold:
                self._stats.count(Counter.COLD_STARTS)
        finally:
            if not sent:
                self._release(healthy)
        return deadline

    def _settle(self, wait_s: float | None) -> CallResult | None:
        """Receive the reply and answer it; ``None`` if none came within ``wait_s`` (settle again later)."""
        pipeline = self._pipeline
        healthy: bool | None = False
        try:
            try:
                answer = pipeline.receive(wait_s)
            except (ChannelClosed, OSError, ValueError):
                raise self._death_error() from None
            if answer is None:
                healthy = None  # nothing to settle yet
                return None
            reply, result = answer
            if reply.get("peakRssBytes", 0) > self._memory_limit_bytes:
                pipeline.kill(KillReason.OUT_OF_MEMORY)
                raise self._death_error()
            if reply["op"] == "result" and len(result) > SYNC_RESPONSE_LIMIT_BYTES:  # what Lambda refuses
                healthy = True
                too_large = ResponseSizeTooLarge.over(len(result), SYNC_RESPONSE_LIMIT_BYTES)
                too_large.call_log = CallLog.of(reply)
                raise too_large
            if reply["op"] == "error":
                error = error_from_body(reply["error"], reply.get("retryAfterS"))
                error.call_log = CallLog.of(reply)
                if isinstance(error, OutOfMemory):  # MemoryError in the function: the pipeline exits
                    self._stats.count(Counter.OUT_OF_MEMORY)
                    raise error
                healthy = True
                raise error
            healthy = True
        finally:
            if healthy is not None:
                self._release(healthy)
        finished = self._clock()
        return CallResult.of(
            self._spec, self._ticket, pipeline.label, result, reply, self._dispatched, self._cold_ms, finished
        )

    def _death_error(self) -> LambdapoolError:
        """What to answer for a call whose pipeline died under it (or was killed for it); counted."""
        error, counter = ending(self._pipeline, self._spec)
        if counter is not None:
            self._stats.count(counter)
        return error


def _answered(outcome: CallResult | None) -> CallResult:
    assert outcome is not None, "a reply waited for without a bound always comes (or raises)"
    return outcome
