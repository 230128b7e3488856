"""restful-functions' controls: the listing of every function with its definition and running count, and
terminating every queued and running task of a function, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from .conftest import Client, wait_until

pytestmark = pytest.mark.integration


def listing(client: Client) -> dict[str, dict]:
    functions = requests.get(f"{client.url}/__lambdapool__/functions", timeout=30).json()["functions"]
    return {f"{function['serviceId']}/{function['endpointId']}": function for function in functions}


def test_the_listing_gives_each_functions_definition_and_running_count(
    start_emulator: Callable[..., Client], tmp_path: Path
) -> None:
    client = start_emulator()
    listed = listing(client)

    echo = listed["b/echo"]
    assert echo["parameters"] == [{"name": "x", "annotation": None, "required": False, "default": None}]
    assert echo["acceptsOtherParameters"] is True
    gated = listed["b/gated"]
    assert [(p["name"], p["annotation"], p["required"]) for p in gated["parameters"]] == [
        ("tag", "str", True),
        ("gate", "str", True),
        ("log", "str", True),
    ]
    assert (gated["description"], gated["timeoutS"], gated["memoryMb"]) == (
        "Records that it started (in ``log``), then waits for ``gate``.",
        60,
        128,
    )
    assert gated["pool"]["ceil"] == 2 and gated["running"] == 0
    assert "secured/hello" in listed  # a keyed service's functions are listed (their keys are not)

    gate = tmp_path / "gate"
    body = {"tag": "t", "gate": str(gate), "log": str(tmp_path / "log")}
    task_id = client.submit("b", "gated", body).json()["taskId"]
    wait_until(lambda: listing(client)["b/gated"]["running"] == 1)
    gate.touch()
    client.wait_for_task(task_id, "DONE")
    wait_until(lambda: listing(client)["b/gated"]["running"] == 0)


def test_terminating_a_functions_tasks_ends_the_running_one_and_the_queued_ones(
    start_emulator: Callable[..., Client], tmp_path: Path
) -> None:
    client = start_emulator()
    body = {"tag": "t", "gate": str(tmp_path / "never"), "log": str(tmp_path / "log")}
    task_ids = [client.submit("b", "gated_one", {**body, "tag": str(n)}).json()["taskId"] for n in range(3)]
    wait_until(lambda: client.task(task_ids[0]).json()["status"] == "RUNNING")

    answer = requests.delete(
        f"{client.url}/public/api/v1/tasks", params={"serviceId": "b", "endpointId": "gated_one"}, timeout=60
    )

    assert answer.status_code == 200
    assert sorted(answer.json()["terminated"]) == sorted(task_ids)
    assert {client.wait_for_task(task_id, "CANCELLED")["status"] for task_id in task_ids} == {"CANCELLED"}
    gate = tmp_path / "gate"
    gate.touch()
    done = client.run("b", "gated_one", {**body, "gate": str(gate)})  # the function serves again
    assert done.json()["response"] == "t"


def test_terminating_needs_the_function_and_its_services_key(start_emulator: Callable[..., Client]) -> None:
    client = start_emulator()

    missing = requests.delete(f"{client.url}/public/api/v1/tasks", params={"serviceId": "b"}, timeout=30)
    keyed = requests.delete(
        f"{client.url}/public/api/v1/tasks", params={"serviceId": "secured", "endpointId": "hello"}, timeout=30
    )
    unknown = requests.delete(
        f"{client.url}/public/api/v1/tasks", params={"serviceId": "b", "endpointId": "nope"}, timeout=30
    )

    assert (missing.status_code, missing.json()["errorType"]) == (400, "BadRequest")
    assert (keyed.status_code, keyed.json()["errorType"]) == (401, "Unauthorized")
    assert (unknown.status_code, unknown.json()["errorType"]) == (404, "NotFound")
