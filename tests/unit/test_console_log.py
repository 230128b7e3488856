"""The console log's handler: lines as ``HH:MM:SS message``, written by its own thread in batches, nothing
lost at stop."""

from __future__ import annotations

import io
import logging
import re
import time

from lambdapool.emulator.http._console import ConsoleLog


class CountingStream(io.StringIO):
    """A console that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"lambdapool.test-console.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def test_lines_queued_meanwhile_are_written_in_one_write_at_stop_and_in_order() -> None:
    stream = CountingStream()
    console = ConsoleLog(stream, interval_s=3600)  # the writer holds its batch until stop()
    logger = logger_to(console, "batch")
    try:
        for number in range(500):
            logger.info(f"POST /run  [s/e#1] warm  200  {number}.00 ms")
    finally:
        console.stop()
        logger.removeHandler(console)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit("  ", 1)[1] for line in lines] == [f"{number}.00 ms" for number in range(500)]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d POST /run  \[s/e#1\] warm  200  \d+\.00 ms", line) for line in lines)
    assert stream.writes == 1


def test_the_time_stamp_is_the_records_own_and_arguments_are_formatted_as_logged() -> None:
    stream = io.StringIO()
    console = ConsoleLog(stream, interval_s=3600)
    logger = logger_to(console, "stamp")
    values = ["first"]
    try:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "plain", None, None)
        record.created = time.mktime((2026, 11, 22, 13, 4, 5, 0, 0, -1))
        logger.handle(record)
        logger.info("with %s", values)
        values[0] = "changed later"  # formatted when logged, not when written
    finally:
        console.stop()
        logger.removeHandler(console)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "13:04:05 plain"
    assert re.fullmatch(r"\d\d:\d\d:\d\d with \['first'\]", lines[1])


def test_a_traceback_is_written_with_its_record() -> None:
    stream = io.StringIO()
    console = ConsoleLog(stream)
    logger = logger_to(console, "traceback")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("the call failed")
    finally:
        console.stop()
        logger.removeHandler(console)
    text = stream.getvalue()
    assert "the call failed\nTraceback (most recent call last):" in text and "ValueError: boom" in text


def test_lines_are_written_without_waiting_for_stop() -> None:
    stream = io.StringIO()
    console = ConsoleLog(stream, interval_s=0.01)
    logger = logger_to(console, "prompt")
    try:
        logger.info("soon")
        deadline = time.monotonic() + 30
        while "soon" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue().endswith(" soon\n")
    finally:
        console.stop()
        logger.removeHandler(console)


def test_after_stop_records_are_written_at_once_and_the_writer_has_ended() -> None:
    stream = io.StringIO()
    console = ConsoleLog(stream)
    logger = logger_to(console, "after")
    try:
        console.stop()
        assert not console._thread.is_alive()
        logger.warning("late")
        assert stream.getvalue().endswith(" late\n")
        console.stop()  # twice is fine
    finally:
        logger.removeHandler(console)


def test_a_console_that_is_gone_does_not_fail_the_logger() -> None:
    stream = io.StringIO()
    stream.close()
    console = ConsoleLog(stream)
    logger = logger_to(console, "gone")
    try:
        logger.info("nobody reads this")
    finally:
        console.stop()
        logger.removeHandler(console)
