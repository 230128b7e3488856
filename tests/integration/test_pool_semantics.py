"""Dataiku's pool semantics over real HTTP and real pipeline processes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import APPS, Client, wait_until

pytestmark = pytest.mark.integration


def _started(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_burst_is_served_two_at_once_then_from_the_queue_in_arrival_order(behaviours: Client, tmp_path: Path) -> None:
    # Pool(floor=1, ceil=2, cruise=1, queue=2): calls 1-2 run, 3-4 queue, 5 is rejected at once.
    log = tmp_path / "started.log"
    gates = {tag: tmp_path / f"gate-{tag}" for tag in "1234"}
    behaviours.wait_for_pool("b", "gated", idle=1)
    with ThreadPoolExecutor(4) as pool:
        futures = {}
        for tag, expected in zip("1234", [{"busy": 1}, {"busy": 2}, {"queue": 1}, {"queue": 2}], strict=True):
            body = {"tag": tag, "gate": str(gates[tag]), "log": str(log)}
            futures[tag] = pool.submit(behaviours.run, "b", "gated", body)
            behaviours.wait_for_pool("b", "gated", **expected)
        wait_until(lambda: len(_started(log)) == 2)

        fifth = behaviours.run("b", "gated", {"tag": "5", "gate": str(gates["1"]), "log": str(log)})
        assert fifth.status_code == 429
        assert fifth.json()["errorType"] == "QueueFull"
        assert int(fifth.headers["Retry-After"]) >= 1

        # Freeing one pipeline serves the head of the queue (3), not 4.
        gates["1"].touch()
        assert futures["1"].result().status_code == 200
        wait_until(lambda: len(_started(log)) == 3)
        assert _started(log) == ["1", "2", "3"] or _started(log) == ["2", "1", "3"]
        for gate in gates.values():
            gate.touch()
        answers = {tag: future.result() for tag, future in futures.items()}

    assert {tag: answer.status_code for tag, answer in answers.items()} == dict.fromkeys("1234", 200)
    assert [answer.json()["response"]["tag"] for answer in answers.values()] == list("1234")
    assert _started(log)[2:] == ["3", "4"]
    queued = [answers[tag].json()["timing"]["wait"] for tag in "34"]
    assert all(wait > 0 for wait in queued)
    # After the burst, the pool retires back to cruise (1 pipeline).
    status = behaviours.wait_for_pool("b", "gated", total=1, idle=1)
    assert status["counters"]["queueFull"] == 1
    assert status["counters"]["succeeded"] == 4


def test_a_call_waiting_longer_than_timeout_ms_gets_queue_timeout(behaviours: Client, tmp_path: Path) -> None:
    # Pool(floor=1, ceil=1, queue=1, timeout_ms=200): the second call waits 200 ms, then is rejected.
    gate = tmp_path / "gate"
    behaviours.wait_for_pool("b", "gated_short_queue", idle=1)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(behaviours.run, "b", "gated_short_queue", {"gate": str(gate)})
        behaviours.wait_for_pool("b", "gated_short_queue", busy=1)
        queued = behaviours.run("b", "gated_short_queue", {"gate": str(gate)})
        gate.touch()
        assert running.result().status_code == 200
    assert queued.status_code == 429
    assert queued.json()["errorType"] == "QueueTimeout"
    assert "Retry-After" in queued.headers
    status = behaviours.endpoint_status("b", "gated_short_queue")
    assert status["counters"]["queueTimeout"] == 1
    assert status["queue"]["depth"] == 0


def test_cold_start_is_reported_exactly_for_calls_served_by_a_new_pipeline(
    start_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_log = tmp_path / "init.log"
    monkeypatch.setenv("INIT_LOG", str(init_log))
    client = start_emulator(APPS / "behaviours")
    client.wait_for_pool("b", "whoami", idle=1)

    warm = client.run("b", "whoami", {}).json()  # the floor pipeline was ready: no cold start
    assert warm["apiContext"]["coldStart"] is False
    assert warm["timing"]["coldStart"] == 0

    gate = tmp_path / "gate"
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.run, "b", "whoami", {"gate": str(gate)})
        client.wait_for_pool("b", "whoami", busy=1)
        cold = client.run("b", "whoami", {}).json()  # the only pipeline is busy: a new one starts
        gate.touch()
        first = busy.result().json()

    assert cold["apiContext"]["coldStart"] is True
    assert cold["timing"]["coldStart"] > 0
    assert cold["response"]["pid"] != warm["response"]["pid"]
    assert first["response"]["pid"] == warm["response"]["pid"]
    again = client.run("b", "whoami", {}).json()
    assert again["apiContext"]["coldStart"] is False

    # Init code ran once in each pipeline: its counter is 1 everywhere and each pid logged it once.
    for answer in (warm, cold, first, again):
        assert answer["response"]["initRuns"] == 1
    init_pids = [int(line) for line in init_log.read_text().split()]
    assert len(init_pids) == len(set(init_pids))
    assert {warm["response"]["pid"], cold["response"]["pid"]} <= set(init_pids)
    assert os.getpid() not in init_pids  # the emulator never runs the app's init code itself
    assert client.endpoint_status("b", "whoami")["counters"]["coldStarts"] == 1


def test_a_scale_to_zero_pool_keeps_its_last_pipeline_warm_then_retires_it(start_emulator) -> None:
    emulator = start_emulator(APPS / "behaviours", keep_warm_s=1.0)
    first = emulator.run("b", "zero", {}).json()
    second = emulator.run("b", "zero", {}).json()
    assert first["apiContext"]["coldStart"] is True
    assert second["apiContext"]["coldStart"] is False and second["response"] == first["response"]
    emulator.wait_for_pool("b", "zero", total=0)  # retired once idle for keep_warm_s
    assert emulator.run("b", "zero", {}).json()["apiContext"]["coldStart"] is True


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_idle_pipelines_are_frozen_between_calls_as_lambda_freezes_an_environment(start_emulator) -> None:
    emulator = start_emulator(APPS / "behaviours")
    status = emulator.wait_for_pool("b", "echo", idle=1, busy=0, starting=0)
    pid = status["pipelines"]["processes"][0]["pid"]
    wait_until(lambda: _state(pid) == "T")  # stopped: none of its threads runs while it is idle
    for _ in range(3):
        answer = emulator.run("b", "echo", {"x": 1})
        assert answer.status_code == 200 and answer.json()["apiContext"]["pipelineId"] == "b-echo-1"
        wait_until(lambda: _state(pid) == "T")


def test_no_freeze_lets_idle_pipelines_run(start_emulator) -> None:
    emulator = start_emulator(APPS / "behaviours", freeze=False)
    status = emulator.wait_for_pool("b", "echo", idle=1, busy=0, starting=0)
    assert emulator.run("b", "echo", {"x": 1}).status_code == 200
    assert _state(status["pipelines"]["processes"][0]["pid"]) in ("S", "R")
