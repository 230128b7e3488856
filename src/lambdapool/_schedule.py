"""AWS EventBridge schedule expressions: ``rate(...)`` and six-field ``cron(...)``, parsed and evaluated.

Standard library only: declarations are validated in the model, which goes into every Lambda package.
Written here rather than taken from PyPI because the common cron libraries implement the five-field Unix
dialect (or Quartz's, with seconds), not AWS's: six fields with a year, ``?`` required in one of the two
day fields, 1 = Sunday in day-of-week, and ``L``, ``W`` and ``#``.

All times are UTC, as EventBridge evaluates them.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import re
from collections.abc import Iterator

__all__ = ["CronSchedule", "RateSchedule", "Schedule", "parse_schedule"]

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    name: index
    for index, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_YEARS = (1970, 2199)


class Schedule:
    """A parsed schedule expression."""

    expression: str

    def next_after(self, moment: dt.datetime, anchor: dt.datetime | None = None) -> dt.datetime | None:
        """The first firing strictly after ``moment`` (aware UTC), or ``None`` if there is none.

        ``anchor`` is when a ``rate`` schedule started (EventBridge counts from the rule's creation).
        """
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class RateSchedule(Schedule):
    """``rate(N unit)``: every ``period`` from the moment the schedule starts."""

    expression: str
    period: dt.timedelta

    def next_after(self, moment: dt.datetime, anchor: dt.datetime | None = None) -> dt.datetime | None:
        start = anchor if anchor is not None else moment
        if moment < start:
            return start + self.period
        periods = (moment - start) // self.period + 1
        return start + periods * self.period


def _fail(expression: str, why: str) -> ValueError:
    return ValueError(f"invalid schedule {expression!r}: {why}")


def _number(token: str, names: dict[str, int], low: int, high: int, expression: str, field: str) -> int:
    value = names.get(token.upper()) if not token.isdigit() else int(token)
    if value is None or not low <= value <= high:
        raise _fail(expression, f"{field} value {token!r} is not in {low}-{high}")
    return value


def _field(
    text: str, low: int, high: int, expression: str, field: str, names: dict[str, int] | None = None
) -> frozenset[int]:
    """A field of numbers with ``*``, ranges, lists and steps."""
    names = names or {}
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        if step_text and (not step_text.isdigit() or int(step_text) == 0):
            raise _fail(expression, f"{field} step {step_text!r} must be a positive number")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first = _number(start, names, low, high, expression, field)
            last = _number(end, names, low, high, expression, field)
            if last < first:
                raise _fail(expression, f"{field} range {base!r} runs backwards")
        else:
            first = _number(base, names, low, high, expression, field)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclasses.dataclass(frozen=True)
class _DayOfMonth:
    days: frozenset[int] = frozenset()
    last: bool = False  # L
    nearest_weekday: int | None = None  # nW
    last_weekday: bool = False  # LW

    def matches(self, year: int, month: int) -> list[int]:
        length = calendar.monthrange(year, month)[1]
        found = {day for day in self.days if day <= length}
        if self.last:
            found.add(length)
        if self.nearest_weekday is not None and self.nearest_weekday <= length:
            found.add(_nearest_weekday(year, month, self.nearest_weekday))
        if self.last_weekday:
            found.add(_nearest_weekday(year, month, length))
        return sorted(found)


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Monday-Friday) nearest ``day`` without leaving the month, as ``W`` means."""
    length = calendar.monthrange(year, month)[1]
    weekday = calendar.weekday(year, month, day)  # Monday = 0
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return day + 1 if day < length else day - 2
    return day


@dataclasses.dataclass(frozen=True)
class _DayOfWeek:
    weekdays: frozenset[int] = frozenset()  # 1 = Sunday ... 7 = Saturday
    last_of_month: int | None = None  # nL: the last such weekday of the month
    nth: tuple[int, int] | None = None  # d#n: the n-th such weekday of the month

    def matches(self, year: int, month: int) -> list[int]:
        length = calendar.monthrange(year, month)[1]
        aws_weekday = [(calendar.weekday(year, month, day) + 1) % 7 + 1 for day in range(1, length + 1)]
        found = {day for day in range(1, length + 1) if aws_weekday[day - 1] in self.weekdays}
        if self.last_of_month is not None:
            found.add(max(day for day in range(1, length + 1) if aws_weekday[day - 1] == self.last_of_month))
        if self.nth is not None:
            weekday, count = self.nth
            days = [day for day in range(1, length + 1) if aws_weekday[day - 1] == weekday]
            if count <= len(days):
                found.add(days[count - 1])
        return sorted(found)


def _day_of_month(text: str, expression: str) -> _DayOfMonth:
    if text == "L":
        return _DayOfMonth(last=True)
    if text == "LW":
        return _DayOfMonth(last_weekday=True)
    match = re.fullmatch(r"(\d+)W", text)
    if match:
        return _DayOfMonth(nearest_weekday=_number(match.group(1), {}, 1, 31, expression, "day-of-month"))
    return _DayOfMonth(days=_field(text, 1, 31, expression, "day-of-month"))


def _day_of_week(text: str, expression: str) -> _DayOfWeek:
    if text == "L":
        return _DayOfWeek(weekdays=frozenset({7}))  # AWS: L alone is the last day of the week, Saturday
    match = re.fullmatch(r"(\w+)L", text)
    if match:
        return _DayOfWeek(last_of_month=_number(match.group(1), _WEEKDAYS, 1, 7, expression, "day-of-week"))
    match = re.fullmatch(r"(\w+)#(\d)", text)
    if match:
        weekday = _number(match.group(1), _WEEKDAYS, 1, 7, expression, "day-of-week")
        count = int(match.group(2))
        if not 1 <= count <= 5:
            raise _fail(expression, f"day-of-week {text!r}: the occurrence after # must be 1-5")
        return _DayOfWeek(nth=(weekday, count))
    return _DayOfWeek(weekdays=_field(text, 1, 7, expression, "day-of-week", _WEEKDAYS))


@dataclasses.dataclass(frozen=True)
class CronSchedule(Schedule):
    """``cron(minutes hours day-of-month month day-of-week year)`` in EventBridge's dialect."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: _DayOfMonth | None  # None: "?"
    months: frozenset[int]
    day_of_week: _DayOfWeek | None  # None: "?"
    years: frozenset[int]

    def days(self, year: int, month: int) -> list[int]:
        if self.day_of_month is not None:
            return self.day_of_month.matches(year, month)
        assert self.day_of_week is not None
        return self.day_of_week.matches(year, month)

    def _candidates(self, start: dt.datetime) -> Iterator[dt.datetime]:
        for year in sorted(year for year in self.years if year >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                for day in self.days(year, month):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    for hour in sorted(self.hours):
                        for minute in sorted(self.minutes):
                            moment = dt.datetime(year, month, day, hour, minute, tzinfo=dt.timezone.utc)
                            if moment >= start:
                                yield moment

    def next_after(self, moment: dt.datetime, anchor: dt.datetime | None = None) -> dt.datetime | None:
        start = moment.astimezone(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return next(self._candidates(start), None)


def parse_schedule(expression: str) -> Schedule:
    """Parse an EventBridge schedule expression; raises ``ValueError`` saying what is wrong."""
    if not isinstance(expression, str):
        raise ValueError(f"a schedule expression must be a string, got {expression!r}")
    text = expression.strip()
    rate = _RATE.fullmatch(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value == 0:
            raise _fail(expression, "the rate must be a positive number")
        if (value == 1) != (not unit.endswith("s")):
            raise _fail(expression, f"EventBridge wants {'a singular' if value == 1 else 'a plural'} unit here")
        return RateSchedule(expression, dt.timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")]))
    cron = _CRON.fullmatch(text)
    if not cron:
        raise _fail(expression, "expected rate(N minutes|hours|days) or cron(min hour dom month dow year)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise _fail(
            expression, f"cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}"
        )
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise _fail(expression, "exactly one of day-of-month and day-of-week must be '?'")
    return CronSchedule(
        expression=text,
        minutes=_field(minutes, 0, 59, expression, "minutes"),
        hours=_field(hours, 0, 23, expression, "hours"),
        day_of_month=None if dom == "?" else _day_of_month(dom, expression),
        months=_field(month, 1, 12, expression, "month", _MONTHS),
        day_of_week=None if dow == "?" else _day_of_week(dow, expression),
        years=_field(year, *_YEARS, expression, "year"),
    )
