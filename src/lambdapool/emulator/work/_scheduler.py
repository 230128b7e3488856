"""Firing scheduled endpoints on their EventBridge expressions, in the emulator.

Like EventBridge, a firing missed while the emulator was not running (or was stalled) is not replayed: the
next firing is always the first one after now. ``rate`` schedules count from the moment the scheduler starts.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..._invocation import DEFAULT_REGION, LOCAL_ACCOUNT_ID
from ..._schedule import Schedule, parse_schedule

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def scheduled_event(function_name: str, when: dt.datetime, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """The event EventBridge sends the scheduled function deployed as ``function_name`` firing at ``when``
    (what Chalice's ``CloudWatchEvent`` parses): its rule is Chalice's, ``{function_name}-event``, in the
    function's ``region`` and the emulator's account."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:rule/{function_name}-event"],
        "detail": {},
    }


class Scheduler:
    """Calls ``fire(name, scheduled_time)`` for each ``(name, expression)`` when it is due. A thread."""

    def __init__(
        self,
        schedules: list[tuple[str, str]],
        fire: Callable[[str, dt.datetime], None],
        clock: Clock = utc_now,
        max_sleep_s: float = 30.0,
    ):
        self._schedules: dict[str, Schedule] = {name: parse_schedule(expression) for name, expression in schedules}
        self._fire = fire
        self._clock = clock
        self._max_sleep_s = max_sleep_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._anchor = clock()
        self.next_fire: dict[str, dt.datetime | None] = {}

    def prime(self) -> None:
        """Start counting: ``rate`` schedules from now, every schedule's next firing computed."""
        self._anchor = self._clock()
        self.next_fire = {
            name: schedule.next_after(self._anchor, self._anchor) for name, schedule in self._schedules.items()
        }

    def start(self) -> None:
        """:meth:`prime`, then fire from a thread until :meth:`stop`."""
        self.prime()
        if self._schedules:
            self._thread = threading.Thread(target=self._run, name="lambdapool-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop firing and join the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def due(self, now: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """The firings due at ``now``, each schedule moved on to its next firing after ``now``."""
        fired = []
        for name, when in list(self.next_fire.items()):
            if when is not None and when <= now:
                fired.append((name, when))
                self.next_fire[name] = self._schedules[name].next_after(now, self._anchor)
        return fired

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = self._clock()
            for name, when in self.due(now):
                self._fire(name, when)
            upcoming = [when for when in self.next_fire.values() if when is not None]
            if not upcoming:
                return
            wait_s = (min(upcoming) - self._clock()).total_seconds()
            self._stopping.wait(min(max(wait_s, 0.0), self._max_sleep_s))
