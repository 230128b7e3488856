"""The emulator's scheduler, with an injected clock: firings come due exactly, missed ones are not replayed."""

from __future__ import annotations

import datetime as dt
import threading

from lambdapool.emulator.work._scheduler import Scheduler


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


class FakeClock:
    def __init__(self, start: str):
        self.now = utc(start)

    def __call__(self) -> dt.datetime:
        return self.now


def test_rate_schedules_count_from_the_start() -> None:
    clock = FakeClock("2026-11-22T10:00:30")
    scheduler = Scheduler([("every-5", "rate(5 minutes)")], fire=lambda *_: None, clock=clock)
    scheduler.prime()
    assert scheduler.next_fire["every-5"] == utc("2026-11-22T10:05:30")
    assert scheduler.due(utc("2026-11-22T10:05:29")) == []
    assert scheduler.due(utc("2026-11-22T10:05:30")) == [("every-5", utc("2026-11-22T10:05:30"))]
    assert scheduler.next_fire["every-5"] == utc("2026-11-22T10:10:30")


def test_missed_firings_are_not_replayed() -> None:
    clock = FakeClock("2026-11-22T10:00:00")
    scheduler = Scheduler([("minutely", "cron(* * * * ? *)")], fire=lambda *_: None, clock=clock)
    scheduler.prime()
    assert scheduler.next_fire["minutely"] == utc("2026-11-22T10:01:00")
    # The emulator was stalled for ten minutes: one firing, then the next one after now.
    assert scheduler.due(utc("2026-11-22T10:11:30")) == [("minutely", utc("2026-11-22T10:01:00"))]
    assert scheduler.next_fire["minutely"] == utc("2026-11-22T10:12:00")


def test_the_scheduler_thread_fires_when_the_clock_reaches_the_next_firing() -> None:
    clock = FakeClock("2026-11-22T11:59:00")
    fired: list[tuple[str, dt.datetime]] = []
    done = threading.Event()

    def fire(name: str, when: dt.datetime) -> None:
        fired.append((name, when))
        done.set()

    scheduler = Scheduler([("noon", "cron(0 12 * * ? *)")], fire=fire, clock=clock, max_sleep_s=0.01)
    scheduler.start()
    try:
        assert scheduler.next_fire["noon"] == utc("2026-11-22T12:00:00")
        clock.now = utc("2026-11-22T12:00:00")
        assert done.wait(10)
    finally:
        scheduler.stop()
    assert fired == [("noon", utc("2026-11-22T12:00:00"))]
    assert scheduler.next_fire["noon"] == utc("2026-11-23T12:00:00")
