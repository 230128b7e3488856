"""DESIGN 3.1, "a pipeline is a Lambda execution environment": the processes a function starts are part of
its environment (their memory counts against ``memory_mb``, they end with it), and its ``/tmp`` is private
(``TMPDIR``: empty when it starts, seen by no other pipeline, removed with it, limited in size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool._limits import TMP_LIMIT_MB
from lambdapool.emulator import Emulator
from lambdapool.emulator.pipelines import _processes
from lambdapool.emulator.pipelines._processes import (
    _CHILDREN_FILES,
    ProcessStat,
    _LiveProcesses,
    _ScannedProcesses,
    descendants,
    read_stat,
)
from lambdapool.emulator.pool._pipeline import Pipeline

from .conftest import APPS

ISOLATION_APP = APPS / "isolation"

pytestmark = pytest.mark.integration


def start(state_dir: Path) -> Emulator:
    emulator = Emulator(ISOLATION_APP, port=0, state_dir=state_dir, aws="none")
    try:
        emulator.start()
        emulator.serve_in_thread()
    except BaseException:
        emulator.close()
        raise
    return emulator


@pytest.fixture(scope="module")
def isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator serving ``apps/isolation``."""
    emulator = start(tmp_path_factory.mktemp("state"))
    try:
        yield emulator
    finally:
        emulator.close()


def run(emulator: Emulator, endpoint: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{emulator.url}/public/api/v1/iso/{endpoint}/run", json=body, timeout=60)


def response(answer: requests.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["response"]
    return result


def error_type(answer: requests.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    return str(answer.json()["errorType"])


def wait_until(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.01)
    return value


def running(record: Path) -> bool:
    """Whether the process ``record`` names (its pid and start time, written by the app) still runs; a zombie
    has ended."""
    process = json.loads(record.read_text())
    try:
        with open(f"/proc/{process['pid']}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == process["startTicks"] and fields[0] not in ("Z", "X")


def pipelines(emulator: Emulator, endpoint: str) -> dict[str, Pipeline]:
    """The endpoint's pipelines by label."""
    runtime = emulator.catalog.function(f"iso-{endpoint}")
    assert runtime is not None
    found = {pipeline.label: pipeline for pipeline, _ in runtime.pipelines()}
    assert all(isinstance(pipeline, Pipeline) for pipeline in found.values())
    return found  # type: ignore[return-value]


def total_pipelines(emulator: Emulator, endpoint: str) -> int:
    runtime = emulator.catalog.function(f"iso-{endpoint}")
    assert runtime is not None
    occupancy = runtime.occupancy()
    return occupancy.starting + occupancy.idle + occupancy.busy


@pytest.fixture(params=["children files", "scan"])
def process_view(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way of finding a pipeline's processes: ``/proc/<pid>/task/<tid>/children`` where the kernel has
    it, and the scan of every process's parent that stands in for it elsewhere."""
    if request.param == "children files" and not _CHILDREN_FILES:
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children")
    monkeypatch.setattr(_processes, "_CHILDREN_FILES", request.param == "children files")
    return str(request.param)


# -- memory: the whole environment's ---------------------------------------------------------------------


def test_a_child_process_over_memory_mb_is_out_of_memory_and_ends_with_the_pipeline(
    isolation: Emulator, tmp_path: Path, process_view: str
) -> None:
    record = tmp_path / "child"
    answer = run(isolation, "child_hog", {"record": str(record), "megabytes": 300})
    assert error_type(answer, 502) == "OutOfMemory"
    assert "memory_mb=128" in answer.json()["message"]
    wait_until(lambda: not running(record), what="the child's end")


def test_forked_children_count_the_memory_they_share_with_the_pipeline_once(isolation: Emulator) -> None:
    answer = response(run(isolation, "forks", {"children": 8, "hold_s": 1.0}))
    # Adding up each process's resident memory would have been over memory_mb: the pages they share count once.
    assert answer["residentSum"] > 128 * 2**20


def test_a_killed_pipeline_leaves_no_process_behind(isolation: Emulator, tmp_path: Path, process_view: str) -> None:
    record = tmp_path / "forked"
    answer = run(isolation, "fork_and_hang", {"record": str(record)})
    assert error_type(answer, 504) == "Timeout"
    wait_until(lambda: not running(record), what="the child's end")
    wait_until(lambda: not running(tmp_path / "forked.grandchild"), what="the grandchild's end")


def test_processes_a_pipeline_leaves_running_when_it_dies_end_with_it(
    isolation: Emulator, tmp_path: Path, process_view: str
) -> None:
    record, gate = tmp_path / "orphan", tmp_path / "gate"
    with ThreadPoolExecutor(1) as caller:
        call = caller.submit(run, isolation, "orphan", {"record": str(record), "gate": str(gate)})
        wait_until(record.exists, what="the child's start")
        # The pipeline exits at once: the supervisor may never have seen its child, which is found as a
        # member of the pipeline's session (it has left the pipeline's tree by then).
        gate.touch()
        assert error_type(call.result(), 502) == "PipelineCrashed"
    wait_until(lambda: not running(record), what="the orphaned child's end")


def test_a_processes_descendants_are_found_parents_first(process_view: str) -> None:
    starts_grandchild = (
        "import subprocess, sys, time; "
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(grandchild.pid, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", starts_grandchild], stdout=subprocess.PIPE, text=True)
    grandchild = 0
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        processes = _LiveProcesses() if process_view == "children files" else _ScannedProcesses()
        me = read_stat(os.getpid())
        assert me is not None
        found = [pid for pid, _ in descendants(processes, [(os.getpid(), me.start_ticks)])]
        assert found.index(child.pid) < found.index(grandchild)
    finally:
        if grandchild:
            os.kill(grandchild, 9)
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


class FakeProcesses:
    """A view of processes given as ``{pid: (ppid, state)}``."""

    def __init__(self, table: dict[int, tuple[int, str]], listed: dict[int, list[int]]):
        self.table = table
        self.listed = listed

    def stat(self, pid: int) -> ProcessStat | None:
        if pid not in self.table:
            return None
        ppid, state = self.table[pid]
        return ProcessStat(ppid, pid * 10, state)

    def children(self, pid: int) -> list[int]:
        return self.listed.get(pid, [])


def test_descendants_leave_out_ended_processes_and_those_that_moved_since_they_were_listed() -> None:
    table = {2: (1, "S"), 3: (2, "T"), 4: (2, "Z"), 5: (99, "S"), 6: (3, "R")}
    listed = {1: [2, 5, 7], 2: [3, 4], 3: [6, 2]}  # 5 moved to another parent, 7 is gone, 2 is listed twice
    found = descendants(FakeProcesses(table, listed), [(1, 10)])  # type: ignore[arg-type]
    assert found == [(2, 20), (3, 30), (6, 60)]


# -- /tmp: private, empty at first, removed with the pipeline, limited ------------------------------------


def test_tempfile_in_init_code_and_calls_is_the_pipelines_own_directory(isolation: Emulator) -> None:
    answer = response(run(isolation, "scratch", {"name": "mine"}))
    pipeline = pipelines(isolation, "scratch")[answer["pipeline"]]
    assert pipeline.tmp_dir is not None
    tmp = str(pipeline.tmp_dir)
    assert answer["tmp"] == answer["initTmp"] == tmp != tempfile.gettempdir()
    assert answer["variables"] == {"TMPDIR": tmp, "TMP": tmp, "TEMP": tmp}
    assert Path(tmp).is_dir() and pipeline.label in Path(tmp).name
    assert (Path(tmp) / "mine").read_text() == pipeline.label


def test_two_pipelines_of_an_endpoint_do_not_see_each_others_tmp_and_a_retired_ones_is_removed(
    isolation: Emulator, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with ThreadPoolExecutor(2) as calls:
        answers = list(
            calls.map(lambda name: response(run(isolation, "pair", {"name": name, "barrier": str(barrier)})), "ab")
        )
    first, second = answers
    assert first["pipeline"] != second["pipeline"]  # each waited for the other: they ran side by side
    assert first["tmp"] != second["tmp"]
    assert (first["files"], second["files"]) == (["a"], ["b"])
    # The pool is back to cruise=1: one pipeline was retired, and its /tmp went with it.
    wait_until(lambda: total_pipelines(isolation, "pair") == 1, what="the retirement")
    (remaining,) = pipelines(isolation, "pair").values()
    kept = first if remaining.label == first["pipeline"] else second
    retired = second if kept is first else first
    wait_until(lambda: not Path(retired["tmp"]).exists(), what="the retired pipeline's /tmp removal")
    assert Path(kept["tmp"]).is_dir()


def test_a_replaced_pipelines_tmp_is_removed_and_its_successor_starts_with_an_empty_one(isolation: Emulator) -> None:
    written = response(run(isolation, "scratch", {"name": f"before-{uuid.uuid4().hex}"}))
    assert error_type(run(isolation, "scratch", {"name": "crash", "exit_code": 3}), 502) == "PipelineCrashed"
    wait_until(lambda: not Path(written["tmp"]).exists(), what="the crashed pipeline's /tmp removal")
    after = response(run(isolation, "scratch", {"name": "after"}))
    assert after["pipeline"] != written["pipeline"]
    assert after["tmp"] != written["tmp"]
    assert after["files"] == ["after"]


def test_a_pipeline_killed_for_its_timeout_has_its_tmp_removed(isolation: Emulator, tmp_path: Path) -> None:
    (pipeline,) = pipelines(isolation, "fork_and_hang").values()
    assert pipeline.tmp_dir is not None
    assert error_type(run(isolation, "fork_and_hang", {"record": str(tmp_path / "forked")}), 504) == "Timeout"
    wait_until(lambda: not pipeline.tmp_dir.exists(), what="the killed pipeline's /tmp removal")  # type: ignore[union-attr]


def test_a_tmp_over_lambdas_ephemeral_storage_ends_the_call_and_the_pipeline(isolation: Emulator) -> None:
    (pipeline,) = pipelines(isolation, "fill_tmp").values()
    answer = run(isolation, "fill_tmp", {"megabytes": TMP_LIMIT_MB + 88})
    assert error_type(answer, 502) == "PipelineCrashed"
    assert f"its /tmp (TMPDIR) went over {TMP_LIMIT_MB} MB" in answer.json()["message"]
    assert pipeline.tmp_dir is not None and not pipeline.tmp_dir.exists()


def test_every_pipelines_tmp_is_removed_when_the_emulator_closes(tmp_path: Path) -> None:
    emulator = start(tmp_path / "state")
    try:
        written = response(run(emulator, "scratch", {"name": "left"}))
        directories = [
            pipeline.tmp_dir for runtime in emulator.catalog.runtimes() for pipeline, _ in runtime.pipelines()
        ]
        assert Path(written["tmp"]) in directories and all(directory is not None for directory in directories)
    finally:
        emulator.close()
    assert not any(directory.exists() for directory in directories if directory is not None)
    assert not Path(written["tmp"]).exists()
