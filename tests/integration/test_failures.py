"""A function that raises, exits, crashes, hangs or eats memory gets its status; the next call succeeds."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import APPS, Client, alive, wait_until

pytestmark = pytest.mark.integration


def _assert_error(answer, status: int, error_type: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["errorType"] == error_type
    assert set(body) == {"errorType", "message", "detailedMessage"}
    return body


def test_a_raising_function_is_a_500_named_after_the_exception(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "fail", {"message": "no such model"}), 500, "ValueError")
    assert body["message"] == "no such model"
    assert "Traceback" in body["detailedMessage"] and "raise ValueError(message)" in body["detailedMessage"]
    # The pipeline survives an ordinary exception.
    status = behaviours.endpoint_status("b", "fail")
    assert status["pipelines"]["total"] == 1 and status["counters"]["crashes"] == 0


@pytest.mark.parametrize(
    ("endpoint", "how"),
    [
        ("hard_exit", "exited with code 3"),
        ("system_exit", "exited with code 7"),
        ("segfault", "killed by SIGSEGV"),
    ],
)
def test_a_pipeline_that_dies_mid_call_is_a_502_and_is_replaced(behaviours: Client, endpoint: str, how: str) -> None:
    behaviours.wait_for_pool("b", endpoint, idle=1)
    first_pid = behaviours.endpoint_status("b", endpoint)["pipelines"]["processes"][0]["pid"]
    body = _assert_error(behaviours.run("b", endpoint, {}), 502, "PipelineCrashed")
    assert how in body["message"]
    status = behaviours.wait_for_pool("b", endpoint, idle=1)
    assert status["counters"]["crashes"] == 1
    assert status["pipelines"]["processes"][0]["pid"] != first_pid


def test_a_call_past_timeout_s_is_a_504_and_the_next_call_succeeds(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "hang", {}), 504, "Timeout")
    assert "timeout_s=1" in body["message"]
    answer = behaviours.run("b", "hang", {"hang": False})
    assert answer.status_code == 200
    assert behaviours.endpoint_status("b", "hang")["counters"]["timeouts"] == 1


def test_a_call_whose_function_forked_still_times_out_and_the_emulator_stops_at_once(
    start_emulator: Callable[..., Client], tmp_path: Path
) -> None:
    # The child holds a copy of the pipeline's socket and outlives the pipeline: killing the pipeline and
    # closing the socket would not end the emulator's read of it; the call, and the shutdown, would hang.
    emulator = start_emulator(APPS / "behaviours")
    gate = tmp_path / "release-the-child"
    try:
        body = _assert_error(emulator.run("b", "fork_and_hang", {"gate": str(gate)}), 504, "Timeout")
        assert "timeout_s=1" in body["message"]
        stopped = threading.Thread(target=emulator.emulator.close)
        stopped.start()
        stopped.join(timeout=20)
        assert not stopped.is_alive()
    finally:
        gate.touch()
    child = int((tmp_path / "release-the-child.pid").read_text())
    wait_until(lambda: not _alive(child))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_memory_over_memory_mb_is_out_of_memory_and_the_next_call_succeeds(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "hog", {"megabytes": 300, "hold_s": 5}), 502, "OutOfMemory")
    assert "memory_mb=128" in body["message"]
    # A short spike is caught too (from the pipeline's peak resident memory).
    _assert_error(behaviours.run("b", "hog", {"megabytes": 300}), 502, "OutOfMemory")
    answer = behaviours.run("b", "hog", {"megabytes": 10})
    assert answer.status_code == 200
    assert answer.json()["response"]["held"] == 10 * 2**20
    assert behaviours.endpoint_status("b", "hog")["counters"]["outOfMemory"] == 2


def test_a_result_that_is_not_json_is_a_clear_500(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "not_json", {}), 500, "ResultNotSerializable")
    assert "set" in body["message"]
    _assert_error(behaviours.run("b", "nan", {}), 500, "ResultNotSerializable")


def test_outputs_turn_a_tuple_into_named_fields(behaviours: Client) -> None:
    answer = behaviours.run("b", "pair", {"n": 2})
    assert answer.status_code == 200
    assert answer.json()["response"] == {"a": 0, "b": 1}


def test_a_tuple_of_the_wrong_length_for_outputs_is_a_clear_500(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "pair", {"n": 3}), 500, "OutputMismatch")
    assert "['a', 'b']" in body["message"] and "tuple of 3" in body["message"]


def test_failures_do_not_disturb_other_endpoints(behaviours: Client) -> None:
    assert behaviours.run("b", "hard_exit", {}).status_code == 502
    assert behaviours.run("b", "hang", {}).status_code == 504
    answer = behaviours.run("b", "echo", {"x": 1})
    assert answer.status_code == 200
    assert answer.json()["response"]["x"] == 1


def test_init_code_that_raises_in_a_pipeline_is_a_502_with_its_traceback(behaviours: Client) -> None:
    for _ in range(2):
        body = _assert_error(behaviours.run("b", "doomed", {}), 502, "PipelineCrashed")
        assert "app.py failed to load: RuntimeError: init failed on purpose" in body["message"]
        assert "Traceback" in body["detailedMessage"]
    status = behaviours.endpoint_status("b", "doomed")
    assert status["pipelines"]["total"] == 0  # no restart loop: each attempt belonged to a call
    assert behaviours.run("b", "echo", {}).status_code == 200


def test_a_call_right_after_its_idle_pipeline_died_is_served_by_another(behaviours: Client) -> None:
    # The call reaches the pool before the pipeline's exit is reported: it must not be failed, since it never
    # ran; the pool gives it another pipeline.
    import signal

    for _ in range(20):
        status = behaviours.wait_for_pool("b", "echo", idle=1, busy=0, starting=0)
        pid = status["pipelines"]["processes"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda pid=pid: not alive(pid))  # dead (a zombie or reaped); its exit may not be reported yet
        answer = behaviours.run("b", "echo", {"x": 1})
        assert answer.status_code == 200, answer.text
    assert behaviours.endpoint_status("b", "echo")["counters"]["crashes"] == 0


def test_a_result_over_6_mb_is_refused_as_lambda_refuses_it(behaviours: Client) -> None:
    body = _assert_error(behaviours.run("b", "big", {"megabytes": 7}), 500, "Function.ResponseSizeTooLarge")
    assert "exceeded maximum allowed payload size (6291556 bytes)" in body["message"]
    assert behaviours.run("b", "big", {"megabytes": 5}).status_code == 200  # under the limit, and the pipeline lives
