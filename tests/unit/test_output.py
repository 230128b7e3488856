"""A pipeline's console output (``OutputTee``): whole lines, each prefixed by its pipeline, and what is
flushed half-way out at once, the rest of its line following it unprefixed."""

from __future__ import annotations

import io
import threading

from lambdapool.emulator.pipelines._worker import OutputTee


def tee() -> tuple[OutputTee, io.StringIO]:
    stream = io.StringIO()
    output = OutputTee(stream)
    output.prefix = "[svc/ep#1] "
    return output, stream


def test_whole_lines_are_prefixed_and_an_unfinished_one_waits_for_its_end() -> None:
    output, stream = tee()

    output.write("one\ntwo\nthr")
    assert stream.getvalue() == "[svc/ep#1] one\n[svc/ep#1] two\n"
    output.write("ee\n")
    assert stream.getvalue().endswith("[svc/ep#1] three\n")


def test_a_flush_writes_the_unfinished_line_and_its_rest_follows_unprefixed() -> None:
    output, stream = tee()

    output.write("progress 10%")
    output.flush()  # print(..., end="", flush=True)
    assert stream.getvalue() == "[svc/ep#1] progress 10%"
    output.write(" 20%\nnext\n")
    output.end_call()

    assert stream.getvalue() == "[svc/ep#1] progress 10% 20%\n[svc/ep#1] next\n"


def test_the_end_of_a_call_writes_its_last_line_even_unfinished() -> None:
    output, stream = tee()

    output.write("no newline")
    output.end_call()

    assert stream.getvalue() == "[svc/ep#1] no newline\n"


def test_threads_printing_at_once_never_mix_within_a_line() -> None:
    output, stream = tee()

    def chatter(tag: str) -> None:
        for number in range(300):
            output.write(f"{tag}-{number}-" + "x" * 50)
            output.write("\n")

    threads = [threading.Thread(target=chatter, args=(tag,)) for tag in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 900
    assert all(line.startswith("[svc/ep#1] ") and line.endswith("x" * 50) for line in lines)
