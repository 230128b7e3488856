"""EventBridge schedule expressions: exact next firings from an injected time, and clear errors."""

from __future__ import annotations

import datetime as dt

import pytest

from lambdapool._schedule import parse_schedule


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 12 * * ? *)", "2026-11-22T12:00", "2026-11-23T12:00"),
        ("cron(0 12 * * ? *)", "2026-11-22T11:59:59", "2026-11-22T12:00"),
        ("cron(0/15 * * * ? *)", "2026-11-22T10:07", "2026-11-22T10:15"),
        ("cron(5,35 14 * * ? *)", "2026-11-22T14:05", "2026-11-22T14:35"),
        ("cron(0 18 ? * MON-FRI *)", "2026-11-27T18:00", "2026-11-30T18:00"),  # Friday -> Monday
        ("cron(0 8 1 JAN,JUL ? *)", "2026-11-22T00:00", "2027-01-01T08:00"),
        ("cron(15 10 ? * 6L 2026)", "2026-11-01T00:00", "2026-11-27T10:15"),  # last Friday
        ("cron(0 9 ? * 2#1 *)", "2026-11-30T00:00", "2026-12-07T09:00"),  # first Monday
        ("cron(0 9 ? * MON#1 *)", "2026-11-30T00:00", "2026-12-07T09:00"),
        ("cron(0 0 ? * 1#5 *)", "2026-12-01T00:00", "2027-01-31T00:00"),  # a fifth Sunday
        ("cron(0 0 L * ? *)", "2027-02-01T00:00", "2027-02-28T00:00"),
        ("cron(0 0 L 2 ? *)", "2027-03-01T00:00", "2028-02-29T00:00"),  # leap year
        ("cron(0 0 15W * ? *)", "2026-11-01T00:00", "2026-11-16T00:00"),  # the 15th is a Sunday
        ("cron(0 0 1W * ? *)", "2026-07-31T00:00", "2026-08-03T00:00"),  # Saturday the 1st: Monday the 3rd
        ("cron(0 0 31W * ? *)", "2027-10-01T00:00", "2027-10-29T00:00"),  # Sunday the 31st: Friday
        ("cron(0 0 LW * ? *)", "2027-01-01T00:00", "2027-01-29T00:00"),  # last weekday of January 2027
        ("cron(0 0 ? * L *)", "2026-11-22T00:00", "2026-11-28T00:00"),  # L alone: Saturday
        ("cron(0 0 29 2 ? *)", "2026-03-01T00:00", "2028-02-29T00:00"),
        ("cron(30 23 31 * ? *)", "2026-11-01T00:00", "2026-12-31T23:30"),  # November has no 31st
        ("cron(0 10 * * ? 2025)", "2026-01-01T00:00", None),
        ("cron(0 10 * * ? 2027-2029/2)", "2026-01-01T00:00", "2027-01-01T10:00"),
        ("cron(0 0 1 * ? *)", "2026-12-31T23:59", "2027-01-01T00:00"),
    ],
)
def test_cron_next_firing(expression: str, after: str, expected: str | None) -> None:
    moment = parse_schedule(expression).next_after(utc(after))
    assert moment == (utc(expected) if expected else None)


@pytest.mark.parametrize(
    ("expression", "anchor", "after", "expected"),
    [
        ("rate(5 minutes)", "2026-11-22T12:00", "2026-11-22T12:07", "2026-11-22T12:10"),
        ("rate(5 minutes)", "2026-11-22T12:00", "2026-11-22T12:10", "2026-11-22T12:15"),
        ("rate(1 minute)", "2026-11-22T12:00:30", "2026-11-22T12:00:30", "2026-11-22T12:01:30"),
        ("rate(1 hour)", "2026-11-22T12:00", "2026-11-22T11:00", "2026-11-22T13:00"),
        ("rate(1 day)", "2026-11-22T06:00", "2026-11-25T07:00", "2026-11-26T06:00"),
        ("rate(2 days)", "2026-11-22T00:00", "2026-11-22T00:00", "2026-11-24T00:00"),
    ],
)
def test_rate_fires_every_period_from_its_start(expression: str, anchor: str, after: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(utc(after), anchor=utc(anchor)) == utc(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 * * ?)", "cron needs 6 fields"),
        ("cron(60 * * * ? *)", "minutes value '60' is not in 0-59"),
        ("cron(0 24 * * ? *)", "hours value '24'"),
        ("cron(0 0 32 * ? *)", "day-of-month value '32'"),
        ("cron(0 0 ? * 8 *)", "day-of-week value '8'"),
        ("cron(0 0 ? * 2#6 *)", "the occurrence after # must be 1-5"),
        ("cron(0 0 1 FOO ? *)", "month value 'FOO'"),
        ("cron(0 0 1 * ? 1969)", "year value '1969'"),
        ("cron(0/0 * * * ? *)", "step '0' must be a positive number"),
        ("cron(30-10 * * * ? *)", "runs backwards"),
        ("rate(1 minutes)", "singular"),
        ("rate(5 minute)", "plural"),
        ("rate(0 minutes)", "positive"),
        ("rate(5 weeks)", "expected rate("),
        ("every day at noon", "expected rate("),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid schedule") as caught:
        parse_schedule(expression)
    assert message in str(caught.value)
