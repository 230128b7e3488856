"""Asynchronous tasks: /submit, task state, cancel and terminate, and results that survive a restart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .conftest import APPS, Client

pytestmark = pytest.mark.integration


def test_a_submitted_task_runs_through_the_pool_and_keeps_its_result(behaviours: Client) -> None:
    answer = behaviours.submit("b", "echo", {"x": 7})
    assert answer.status_code == 202
    task_id = answer.json()["taskId"]
    task = behaviours.wait_for_task(task_id, "DONE")
    assert task["response"]["x"] == 7
    assert (task["serviceId"], task["endpointId"]) == ("b", "echo")
    assert task["submittedAt"] <= task["startedAt"] <= task["finishedAt"]
    assert behaviours.endpoint_status("b", "echo")["counters"]["succeeded"] == 1


def test_failures_and_timeouts_are_recorded(behaviours: Client) -> None:
    failed = behaviours.wait_for_task(behaviours.submit("b", "fail", {"message": "bad"}).json()["taskId"], "FAILED")
    assert failed["error"]["errorType"] == "ValueError" and failed["error"]["message"] == "bad"
    timed_out = behaviours.wait_for_task(behaviours.submit("b", "hang", {}).json()["taskId"], "TIMEOUT")
    assert timed_out["error"]["errorType"] == "Timeout"


def test_bad_parameters_are_rejected_at_submission(behaviours: Client) -> None:
    answer = behaviours.submit("b", "pair", {"nope": 1})
    assert answer.status_code == 400 and answer.json()["errorType"] == "BadRequest"


def test_a_queued_task_can_be_cancelled(behaviours: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    behaviours.wait_for_pool("b", "gated_short_queue", idle=1)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(behaviours.run, "b", "gated_short_queue", {"gate": str(gate)})
        behaviours.wait_for_pool("b", "gated_short_queue", busy=1)
        task_id = behaviours.submit("b", "gated_short_queue", {"gate": str(gate)}).json()["taskId"]
        assert behaviours.task(task_id).json()["status"] == "QUEUED"
        cancelled = requests.delete(f"{behaviours.url}/public/api/v1/tasks/{task_id}", timeout=30).json()
        assert cancelled["status"] == "CANCELLED"
        assert cancelled["startedAt"] is None
        gate.touch()
        assert busy.result().status_code == 200
    assert behaviours.task(task_id).json()["status"] == "CANCELLED"


def test_a_running_task_can_be_terminated_and_its_pipeline_is_replaced(behaviours: Client, tmp_path: Path) -> None:
    gate, log = tmp_path / "never-opened", tmp_path / "log"
    task_id = behaviours.submit("b", "gated", {"tag": "t", "gate": str(gate), "log": str(log)}).json()["taskId"]
    behaviours.wait_for_task(task_id, "RUNNING")
    cancelled = requests.delete(f"{behaviours.url}/public/api/v1/tasks/{task_id}", timeout=30).json()
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["error"]["errorType"] == "Cancelled"
    gate.touch()
    answer = behaviours.run("b", "gated", {"tag": "after", "gate": str(gate), "log": str(log)})
    assert answer.status_code == 200


def test_unknown_or_malformed_task_ids_are_not_found(behaviours: Client) -> None:
    for task_id in ("0" * 32, "..", "not-a-task"):
        answer = behaviours.task(task_id)
        assert answer.status_code == 404 and answer.json()["errorType"] == "NotFound"


def test_tasks_of_a_secured_service_need_its_key(behaviours: Client) -> None:
    key = ("s3cr3t-key", "")
    assert behaviours.submit("secured", "hello", {}).status_code == 401
    task_id = behaviours.submit("secured", "hello", {"name": "x"}, auth=key).json()["taskId"]
    assert behaviours.task(task_id).status_code == 401  # reading it needs the key too
    assert behaviours.task(task_id, auth=key).status_code == 200


def test_tasks_are_listed_and_filtered(behaviours: Client) -> None:
    first = behaviours.submit("b", "echo", {"x": 1}).json()["taskId"]
    behaviours.wait_for_task(first, "DONE")
    second = behaviours.submit("b", "fail", {}).json()["taskId"]
    behaviours.wait_for_task(second, "FAILED")
    listed = requests.get(f"{behaviours.url}/public/api/v1/tasks", params={"endpointId": "echo"}, timeout=30)
    assert [task["taskId"] for task in listed.json()["tasks"]] == [first]
    everything = requests.get(f"{behaviours.url}/public/api/v1/tasks", timeout=30).json()["tasks"]
    assert [task["taskId"] for task in everything] == [first, second]


def test_finished_results_survive_a_restart(start_emulator, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_emulator(APPS / "behaviours", state_dir=state)
    done_id = first.submit("b", "echo", {"x": "kept"}).json()["taskId"]
    first.wait_for_task(done_id, "DONE")
    running_id = first.submit("b", "gated", {"tag": "t", "gate": str(tmp_path / "no"), "log": str(tmp_path / "l")})
    running_id = running_id.json()["taskId"]
    first.wait_for_task(running_id, "RUNNING")
    first.emulator.close()

    second = start_emulator(APPS / "behaviours", state_dir=state)
    assert second.task(done_id).json()["response"]["x"] == "kept"
    interrupted = second.task(running_id).json()
    assert interrupted["status"] == "FAILED" and interrupted["error"]["errorType"] == "PipelineCrashed"
