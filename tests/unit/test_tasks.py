"""Task records, their states and the stores that keep them (memory, files, S3), and run_task in process."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdapool import BadRequest, FunctionError, PipelineCrashed, QueueFull, QueueTimeout, Service, Timeout
from lambdapool._errors import Cancelled, LambdapoolError, OutOfMemory
from lambdapool._invocation import InvocationContext
from lambdapool._model import Endpoint
from lambdapool._tasks import (
    TASK_ID,
    MemoryTaskStore,
    S3TaskStore,
    TaskRecord,
    TaskState,
    run_task,
    run_task_event,
    task_event,
)
from lambdapool.emulator.work._tasks import FileTaskStore, Retention

from .fakes import wait_until

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
INTERRUPTED = {
    "errorType": "PipelineCrashed",
    "message": "the emulator stopped before the task finished",
    "detailedMessage": "the task was queued or running when the emulator stopped",
}


def record(number: int, service_id: str = "svc", endpoint_id: str = "ep", **fields: Any) -> TaskRecord:
    """A record with a fixed id and submission time (``number`` orders them)."""
    return TaskRecord(
        f"{number:032x}", service_id, endpoint_id, submitted_at=f"2024-05-01T10:00:{number:02d}.000Z", **fields
    )


# -- the record ------------------------------------------------------------------------------------------


def test_a_new_record_is_queued_with_a_fresh_id_and_the_submission_time() -> None:
    first = TaskRecord.new("svc", "ep")
    second = TaskRecord.new("svc", "ep")

    assert TASK_ID.fullmatch(first.task_id)
    assert first.task_id != second.task_id
    assert TIMESTAMP.fullmatch(first.submitted_at)
    assert (first.service_id, first.endpoint_id, first.status) == ("svc", "ep", TaskState.QUEUED)
    assert (first.started_at, first.finished_at, first.response, first.error) == (None, None, None, None)


def test_a_record_goes_from_running_to_done_with_its_response() -> None:
    running = TaskRecord.new("svc", "ep").started()
    done = running.succeeded({"sum": 3})

    assert running.status is TaskState.RUNNING
    assert TIMESTAMP.fullmatch(running.started_at or "")
    assert running.finished_at is None
    assert done.status is TaskState.DONE
    assert done.started_at == running.started_at
    assert TIMESTAMP.fullmatch(done.finished_at or "")
    assert (done.response, done.error) == ({"sum": 3}, None)


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (Cancelled.queued(), TaskState.CANCELLED),
        (Cancelled.running("svc-ep-1"), TaskState.CANCELLED),
        (Timeout.call("svc/ep", 5), TaskState.TIMEOUT),
        (Timeout.init("svc/ep", 10), TaskState.TIMEOUT),
        (PipelineCrashed("died"), TaskState.FAILED),
        (OutOfMemory.over("svc/ep", 128), TaskState.FAILED),
        (BadRequest("bad"), TaskState.FAILED),
        (FunctionError("ValueError", "bad value"), TaskState.FAILED),
        (QueueFull("full"), TaskState.FAILED),
        (QueueTimeout("waited"), TaskState.FAILED),
    ],
)
def test_a_record_that_ends_with_an_error_takes_the_state_for_it_and_its_envelope(
    error: LambdapoolError, state: TaskState
) -> None:
    ended = TaskRecord.new("svc", "ep").started().ended_with(error)

    assert TaskState.for_error(error) is state
    assert ended.status is state
    assert ended.error == error.to_body()
    assert ended.response is None
    assert TIMESTAMP.fullmatch(ended.finished_at or "")


def test_only_done_failed_timeout_and_cancelled_are_final() -> None:
    assert [state.value for state in TaskState if state.is_final] == ["DONE", "FAILED", "TIMEOUT", "CANCELLED"]


def test_a_queued_record_as_json_has_no_response_and_no_error() -> None:
    assert record(1).to_json() == {
        "taskId": "00000000000000000000000000000001",
        "serviceId": "svc",
        "endpointId": "ep",
        "status": "QUEUED",
        "submittedAt": "2024-05-01T10:00:01.000Z",
        "startedAt": None,
        "finishedAt": None,
    }


def test_the_response_is_in_the_json_only_when_done_even_when_null() -> None:
    done_with_null = record(1).started().succeeded(None)
    failed_with_stray_response = dataclasses.replace(
        record(2).ended_with(BadRequest("bad")), response={"ignored": True}
    )

    assert done_with_null.to_json()["response"] is None
    assert "response" not in failed_with_stray_response.to_json()
    assert failed_with_stray_response.to_json()["error"] == {
        "errorType": "BadRequest",
        "message": "bad",
        "detailedMessage": "bad",
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: record(1),
        lambda: record(1).started(),
        lambda: record(1).started().succeeded({"items": [1, 2.5, "x", None, True]}),
        lambda: record(1).started().succeeded(None),
        lambda: record(1).started().ended_with(Timeout.call("svc/ep", 5)),
        lambda: record(1).ended_with(Cancelled.queued()),
    ],
    ids=["queued", "running", "done", "done-null", "timeout", "cancelled"],
)
def test_a_record_survives_a_json_round_trip(make: Callable[[], TaskRecord]) -> None:
    original = make()

    assert TaskRecord.from_json(json.loads(json.dumps(original.to_json()))) == original


# -- the store interface, on MemoryTaskStore --------------------------------------------------------------


def test_update_replaces_a_record_that_is_not_final() -> None:
    store = MemoryTaskStore()
    store.put(record(1))

    updated = store.update(record(1).task_id, TaskRecord.started)

    assert updated is not None and updated.status is TaskState.RUNNING
    assert store.get(record(1).task_id) == updated


@pytest.mark.parametrize("final", [TaskState.DONE, TaskState.FAILED, TaskState.TIMEOUT, TaskState.CANCELLED])
def test_update_never_changes_a_final_record(final: TaskState) -> None:
    store = MemoryTaskStore()
    ended = record(1, status=final, finished_at="2024-05-01T10:01:00.000Z")
    store.put(ended)
    changes: list[TaskRecord] = []

    def change(latest: TaskRecord) -> TaskRecord:
        changes.append(latest)
        return latest.succeeded("overwritten")

    assert store.update(ended.task_id, change) == ended
    assert store.get(ended.task_id) == ended
    assert changes == []


def test_update_of_an_unknown_task_returns_none_and_stores_nothing() -> None:
    store = MemoryTaskStore()

    assert store.update(record(1).task_id, TaskRecord.started) is None
    assert list(store.records()) == []


def test_list_filters_by_service_endpoint_and_status_and_sorts_oldest_first() -> None:
    store = MemoryTaskStore()
    for each in [
        record(5, "svc", "a", status=TaskState.DONE),
        record(1, "svc", "b"),
        record(3, "svc", "a"),
        record(4, "other", "a"),
        record(2, "svc", "a", status=TaskState.RUNNING),
    ]:
        store.put(each)

    def numbers(records: list[TaskRecord]) -> list[int]:
        return [int(each.task_id, 16) for each in records]

    assert numbers(store.list()) == [1, 2, 3, 4, 5]
    assert numbers(store.list(service_id="svc")) == [1, 2, 3, 5]
    assert numbers(store.list(endpoint_id="a")) == [2, 3, 4, 5]
    assert numbers(store.list(service_id="svc", endpoint_id="a")) == [2, 3, 5]
    assert numbers(store.list(status=TaskState.QUEUED)) == [1, 3, 4]
    assert numbers(store.list(service_id="svc", endpoint_id="a", status=TaskState.DONE)) == [5]
    assert store.list(service_id="nobody") == []


def test_the_memory_store_can_be_changed_while_its_records_are_iterated() -> None:
    store = MemoryTaskStore()
    store.put(record(1))
    store.put(record(2))

    for each in store.records():
        store.put(record(int(each.task_id, 16) + 10))

    assert sorted(int(each.task_id, 16) for each in store.records()) == [1, 2, 11, 12]


def test_concurrent_updates_of_a_memory_store_are_not_lost() -> None:
    store = MemoryTaskStore()
    store.put(record(1, response=0))
    start = threading.Barrier(4)

    def increment() -> None:
        start.wait(5)
        for _ in range(200):
            store.update(record(1).task_id, lambda latest: dataclasses.replace(latest, response=latest.response + 1))

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    stored = store.get(record(1).task_id)
    assert stored is not None and stored.response == 800


# -- FileTaskStore ---------------------------------------------------------------------------------------


def test_file_store_records_survive_a_new_store_on_the_same_directory(tmp_path: Path) -> None:
    done = record(1).started().succeeded({"sum": 3})
    cancelled = record(2).ended_with(Cancelled.queued())
    first = FileTaskStore(tmp_path / "tasks")
    first.put(done)
    first.put(cancelled)

    second = FileTaskStore(tmp_path / "tasks")

    assert second.get(done.task_id) == done
    assert second.get(cancelled.task_id) == cancelled
    # Listings are summaries: a response stays on disk until its task is asked for.
    assert second.list() == [dataclasses.replace(done, response=None), cancelled]


def test_file_store_writes_one_json_file_per_record_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FileTaskStore(tmp_path)
    running = record(1).started()

    store.put(record(1))
    store.put(running)

    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{running.task_id}.json"]
    assert json.loads((tmp_path / f"{running.task_id}.json").read_text(encoding="utf-8")) == running.to_json(
        with_token=True
    )


@pytest.mark.parametrize("left", [TaskState.QUEUED, TaskState.RUNNING])
def test_a_record_left_queued_or_running_on_disk_is_failed_with_pipeline_crashed_on_load(
    tmp_path: Path, left: TaskState
) -> None:
    interrupted = record(1, status=left)
    (tmp_path / f"{interrupted.task_id}.json").write_text(json.dumps(interrupted.to_json()), encoding="utf-8")

    store = FileTaskStore(tmp_path)

    loaded = store.get(interrupted.task_id)
    assert loaded is not None
    assert loaded.status is TaskState.FAILED
    assert loaded.error == INTERRUPTED
    assert TIMESTAMP.fullmatch(loaded.finished_at or "")
    assert dataclasses.replace(loaded, status=left, error=None, finished_at=None) == interrupted
    on_disk = json.loads((tmp_path / f"{interrupted.task_id}.json").read_text(encoding="utf-8"))
    assert on_disk == loaded.to_json(with_token=True)  # recorded, so that the next start finds it failed
    assert FileTaskStore(tmp_path).get(interrupted.task_id) == loaded


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "../../etc/passwd",
        "0" * 31,
        "0" * 33,
        "A" * 32,
        "0" * 32 + "\n",
        "0" * 32 + ".json",
        "/" + "0" * 31,
        "g" * 32,
    ],
)
def test_a_malformed_id_is_none_and_never_reaches_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_id: str
) -> None:
    store = FileTaskStore(tmp_path)

    def no_file_system(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the file system was used for {task_id!r}")

    for name in ("open", "read_text", "read_bytes", "exists", "is_file", "stat", "write_text", "unlink"):
        monkeypatch.setattr(Path, name, no_file_system)
    monkeypatch.setattr("builtins.open", no_file_system)

    assert store.get(task_id) is None
    assert store.update(task_id, TaskRecord.started) is None


def test_a_record_whose_id_is_malformed_is_never_served_even_if_its_file_exists(tmp_path: Path) -> None:
    evil = dataclasses.replace(record(1, status=TaskState.DONE), task_id="evil")
    (tmp_path / "evil.json").write_text(json.dumps(evil.to_json()), encoding="utf-8")

    assert FileTaskStore(tmp_path).get("evil") is None


def test_loading_a_record_with_a_path_in_its_id_writes_nothing_outside_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "tasks"
    directory.mkdir()
    sneaky = dataclasses.replace(record(1), task_id="../outside")  # QUEUED: rewritten as FAILED on load
    (directory / "sneaky.json").write_text(json.dumps(sneaky.to_json()), encoding="utf-8")

    try:
        FileTaskStore(directory)
    except ValueError:
        pass  # refusing the record is as good as skipping it

    assert sorted(path.name for path in tmp_path.iterdir()) == ["tasks"]


def test_an_unreadable_task_file_is_skipped_and_left_alone(tmp_path: Path) -> None:
    good = record(1).started().succeeded("ok")
    (tmp_path / f"{good.task_id}.json").write_text(json.dumps(good.to_json()), encoding="utf-8")
    unreadable: dict[str, bytes] = {
        "not-json.json": b"{not json",
        "binary.json": b"\xff\xfe\x00garbage",
        "a-list.json": b"[]",
        "missing-keys.json": json.dumps({"taskId": "0" * 32}).encode(),
        "bad-status.json": json.dumps({**record(2).to_json(), "status": "EXPLODED"}).encode(),
    }
    for name, content in unreadable.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "a-directory.json").mkdir()

    store = FileTaskStore(tmp_path)

    assert list(store.records()) == [dataclasses.replace(good, response=None)]
    assert store.get(good.task_id) == good
    for name, content in unreadable.items():
        assert (tmp_path / name).read_bytes() == content


# -- S3TaskStore -----------------------------------------------------------------------------------------


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bucket in moto's in-process S3 mock (``mock_aws``): the one place these unit tests use a stand-in
    for AWS, because the real S3 is not reachable from them. Dummy credentials, no endpoint override."""
    from moto import mock_aws

    from lambdapool import _forward

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_forward, "_CLIENTS", {})  # no client cached by another test, for another endpoint
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="task-bucket")
        monkeypatch.setenv("LAMBDAPOOL_TASK_BUCKET", "task-bucket")  # the functions' own setting
        yield "task-bucket"


def test_s3_store_keeps_each_record_as_tasks_id_json(bucket: str) -> None:
    """Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    import boto3

    store = S3TaskStore(bucket)
    done = record(1).started().succeeded({"sum": 3})

    store.put(done)

    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"tasks/{done.task_id}.json")["Body"].read()
    assert json.loads(body) == done.to_json(with_token=True)
    assert store.get(done.task_id) == done
    assert store.get(record(9).task_id) is None


def test_s3_store_answers_none_for_a_malformed_id_even_if_such_an_object_exists(bucket: str) -> None:
    """Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    import boto3

    evil = dataclasses.replace(record(1, status=TaskState.DONE), task_id="evil")
    boto3.client("s3").put_object(Bucket=bucket, Key="tasks/evil.json", Body=json.dumps(evil.to_json()).encode())
    store = S3TaskStore(bucket)
    store.put(record(2))

    assert store.get("evil") is None
    assert store.get("../evil") is None
    assert store.list() == [record(2)]  # records() skips what get() refuses


def test_s3_store_updates_only_records_that_are_not_final_and_lists_oldest_first(bucket: str) -> None:
    """Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    store = S3TaskStore(bucket)
    store.put(record(3, endpoint_id="b"))
    store.put(record(1, status=TaskState.CANCELLED))
    store.put(record(2))

    running = store.update(record(2).task_id, TaskRecord.started)
    cancelled = store.update(record(1).task_id, TaskRecord.started)

    assert running is not None and running.status is TaskState.RUNNING
    assert cancelled == record(1, status=TaskState.CANCELLED)
    assert store.list() == [record(1, status=TaskState.CANCELLED), running, record(3, endpoint_id="b")]
    assert store.list(endpoint_id="b", status=TaskState.QUEUED) == [record(3, endpoint_id="b")]


# -- run_task --------------------------------------------------------------------------------------------


def endpoint_of(function: Callable[..., Any], **options: Any) -> Endpoint:
    service = Service("svc")
    service.function(**options)(function)
    return service.endpoint(function.__name__)


def invocation(endpoint: Endpoint, seconds_left: float = 60.0) -> InvocationContext:
    return InvocationContext(
        request_id="req-1",
        service_id=endpoint.service_id,
        endpoint_id=endpoint.endpoint_id,
        deadline=time.time() + seconds_left,
        cold_start=False,
        pipeline_id="in-process",
    )


def add(a: int, b: int = 0) -> dict[str, int]:
    return {"sum": a + b}


def test_run_task_records_running_then_done_with_the_response() -> None:
    endpoint = endpoint_of(add)
    store = MemoryTaskStore()
    queued = TaskRecord.new("svc", "add")
    store.put(queued)

    final = run_task(endpoint, queued.task_id, {"a": 1, "b": 2}, store, invocation(endpoint))

    assert final is not None
    assert final == store.get(queued.task_id)
    assert (final.status, final.response, final.error) == (TaskState.DONE, {"sum": 3}, None)
    assert final.started_at is not None and final.finished_at is not None


def test_run_task_records_what_the_function_raised() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    endpoint = endpoint_of(divide)
    store = MemoryTaskStore()
    queued = TaskRecord.new("svc", "divide")
    store.put(queued)

    final = run_task(endpoint, queued.task_id, {"a": 1, "b": 0}, store, invocation(endpoint))

    assert final is not None and final.status is TaskState.FAILED
    assert final.error is not None
    assert (final.error["errorType"], final.error["message"]) == ("ZeroDivisionError", "division by zero")
    assert "Traceback" in final.error["detailedMessage"]


def test_run_task_of_an_unknown_task_returns_none_without_calling_the_function() -> None:
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return 1

    endpoint = endpoint_of(count)

    assert run_task(endpoint, record(1).task_id, {}, MemoryTaskStore(), invocation(endpoint)) is None
    assert calls == []


def test_run_task_of_a_task_cancelled_before_it_ran_does_not_call_the_function() -> None:
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return 1

    endpoint = endpoint_of(count)
    store = MemoryTaskStore()
    cancelled = record(1).ended_with(Cancelled.queued())
    store.put(cancelled)

    assert run_task(endpoint, cancelled.task_id, {}, store, invocation(endpoint)) == cancelled
    assert calls == []


def test_a_task_cancelled_while_it_runs_keeps_cancelled() -> None:
    store = MemoryTaskStore()
    queued = TaskRecord.new("svc", "work")
    store.put(queued)

    def work() -> str:
        # DELETE /tasks/{id} arrives while the function runs
        store.update(queued.task_id, lambda latest: latest.ended_with(Cancelled.running("in-process")))
        return "finished anyway"

    endpoint = endpoint_of(work)

    final = run_task(endpoint, queued.task_id, {}, store, invocation(endpoint))

    assert final is not None and final.status is TaskState.CANCELLED
    assert final.response is None
    assert final.error == Cancelled.running("in-process").to_body()
    assert store.get(queued.task_id) == final


def test_a_task_still_running_in_the_last_second_of_its_time_is_recorded_timeout() -> None:
    store = MemoryTaskStore()
    queued = TaskRecord.new("svc", "slow")
    store.put(queued)

    def slow() -> str:
        # runs until its TIMEOUT is recorded (Lambda would then end the invocation)
        wait_until(lambda: (latest := store.get(queued.task_id)) is not None and latest.status.is_final)
        return "too late"

    endpoint = endpoint_of(slow, timeout_s=30)

    final = run_task(endpoint, queued.task_id, {}, store, invocation(endpoint, seconds_left=0.5))

    assert final is not None and final.status is TaskState.TIMEOUT
    assert final.error == {
        "errorType": "Timeout",
        "message": "svc/slow ran longer than timeout_s=30",
        "detailedMessage": "the call was stopped after 30 s",
    }
    assert final.response is None


def test_run_task_event_runs_the_task_an_invocation_carries_and_records_it_in_s3(bucket: str) -> None:
    """Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    endpoint = endpoint_of(add)
    store = S3TaskStore(bucket)
    queued = TaskRecord.new("svc", "add")
    store.put(queued)

    answer = run_task_event(endpoint, task_event(queued, bucket, {"a": 2, "b": 5}), invocation(endpoint))

    final = store.get(queued.task_id)
    assert final is not None and final.status is TaskState.DONE
    assert final.response == {"sum": 7}
    assert answer == final.to_json()


def test_run_task_event_of_an_unknown_task_is_refused(bucket: str) -> None:
    """Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    endpoint = endpoint_of(add)
    unknown = TaskRecord.new("svc", "add")

    with pytest.raises(BadRequest, match="does not match a submitted task"):
        run_task_event(endpoint, task_event(unknown, bucket, {"a": 1}), invocation(endpoint))

    assert S3TaskStore(bucket).get(unknown.task_id) is None


def test_a_forged_task_envelope_rewrites_no_record(bucket: str) -> None:
    """An invocation that names a submitted task without its token, or another bucket, runs nothing and
    changes no record. Runs against moto's in-process S3 (see the ``bucket`` fixture)."""
    endpoint = endpoint_of(add)
    store = S3TaskStore(bucket)
    queued = TaskRecord.new("svc", "add")
    store.put(queued)
    forged = dataclasses.replace(queued, token="0" * 32)

    with pytest.raises(BadRequest, match="does not match a submitted task"):
        run_task_event(endpoint, task_event(forged, bucket, {"a": 1, "b": 1}), invocation(endpoint))
    with pytest.raises(BadRequest, match="names a bucket other than LAMBDAPOOL_TASK_BUCKET"):
        run_task_event(endpoint, task_event(queued, "attackers-bucket", {"a": 1, "b": 1}), invocation(endpoint))

    assert store.get(queued.task_id) == queued


def test_file_store_keeps_responses_on_disk_not_in_memory(tmp_path: Path) -> None:
    store = FileTaskStore(tmp_path)
    big = record(1).started().succeeded({"blob": "x" * 100_000})
    store.put(big)

    assert all(kept.response is None for kept in store.records())  # memory holds the summary only
    assert store.get(big.task_id) == big  # read back from disk
    assert store.stored_bytes() == (tmp_path / f"{big.task_id}.json").stat().st_size


def test_finished_tasks_past_the_retention_period_are_pruned_and_others_kept(tmp_path: Path) -> None:
    now = [time.time()]
    store = FileTaskStore(tmp_path, Retention(max_age_s=3600), clock=lambda: now[0])
    old = dataclasses.replace(record(1).started().succeeded("old"), finished_at="2020-01-01T00:00:00.000Z")
    running = record(2).started()
    store.put(old)
    store.put(running)
    recent = record(3).started().succeeded("recent")
    store.put(recent)  # a finished record triggers pruning

    assert store.get(old.task_id) is None and not (tmp_path / f"{old.task_id}.json").exists()
    assert store.get(running.task_id) == running  # never pruned while it may still change
    assert store.get(recent.task_id) == recent


def test_past_the_size_limit_the_oldest_finished_tasks_go_first(tmp_path: Path) -> None:
    store = FileTaskStore(tmp_path, Retention(max_bytes=25_000))
    records = [record(n).started().succeeded("x" * 10_000) for n in range(1, 5)]
    for kept in records:
        store.put(kept)

    survivors = [kept.task_id for kept in records if store.get(kept.task_id) is not None]
    assert survivors == [records[2].task_id, records[3].task_id]
    assert store.stored_bytes() <= 25_000
    assert sorted(path.stem for path in tmp_path.glob("*.json")) == sorted(survivors)


def test_pruning_also_happens_when_the_store_loads(tmp_path: Path) -> None:
    FileTaskStore(tmp_path).put(
        dataclasses.replace(record(1).started().succeeded(1), finished_at="2020-01-01T00:00:00.000Z")
    )

    assert list(FileTaskStore(tmp_path, Retention(max_age_s=60)).records()) == []
