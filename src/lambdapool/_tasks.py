"""Asynchronous tasks (``/submit``): the task record, its states, and where records are kept.

One record type and one store interface serve the emulator (records in files, :mod:`lambdapool.emulator`),
``chalice local`` (in memory) and AWS (an S3 bucket). :func:`run_task` is how a task runs inside a Lambda
function (or in process under ``chalice local``). Standard library only (boto3 is imported when an S3 store
is used, on AWS): it goes into Lambda packages.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import BadRequest, Cancelled, ConfigurationError, LambdapoolError, Timeout
from ._names import TASK_KEY

if TYPE_CHECKING:
    from ._invocation import InvocationContext
    from ._model import Endpoint

__all__ = [
    "TASK_ID",
    "TASK_KEY",
    "MemoryTaskStore",
    "S3TaskStore",
    "TaskRecord",
    "TaskState",
    "TaskStore",
    "run_task",
    "run_task_event",
    "task_event",
    "utc_timestamp",
]

#: A task id: 32 lowercase hex digits (a UUID4). Ids never reach a file system or a bucket unchecked.
TASK_ID = re.compile(r"[0-9a-f]{32}")


def checked_task_id(task_id: object) -> str:
    """``task_id`` if it is a well-formed task id; raises ``ValueError`` otherwise."""
    if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
        raise ValueError(f"{task_id!r} is not a task id")
    return task_id


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC timestamp (millisecond precision) tasks are stamped with."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


class TaskState(str, enum.Enum):
    """Where a task is; the last four are final."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in (TaskState.QUEUED, TaskState.RUNNING)

    @classmethod
    def for_error(cls, error: LambdapoolError) -> TaskState:
        """The final state of a task that ended with ``error``."""
        if isinstance(error, Cancelled):
            return cls.CANCELLED
        return cls.TIMEOUT if isinstance(error, Timeout) else cls.FAILED


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """A task's state, as ``GET /public/api/v1/tasks/{taskId}`` answers it. ``response`` is the function's
    result once ``DONE``; ``error`` the error envelope of a task that failed, timed out or was cancelled."""

    task_id: str
    service_id: str
    endpoint_id: str
    status: TaskState = TaskState.QUEUED
    submitted_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    response: Any = None
    error: dict[str, str] | None = None
    #: A secret the task's envelope carries, so that only the submitter's invocation can run the task.
    token: str = dataclasses.field(default="", repr=False)

    @classmethod
    def new(cls, service_id: str, endpoint_id: str) -> TaskRecord:
        """A freshly submitted task: a new id and token, ``QUEUED``, stamped now."""
        return cls(
            uuid.uuid4().hex, service_id, endpoint_id, TaskState.QUEUED, utc_timestamp(), token=secrets.token_hex(16)
        )

    def started(self) -> TaskRecord:
        return dataclasses.replace(self, status=TaskState.RUNNING, started_at=utc_timestamp())

    def succeeded(self, response: Any) -> TaskRecord:
        return dataclasses.replace(self, status=TaskState.DONE, finished_at=utc_timestamp(), response=response)

    def ended_with(self, error: LambdapoolError) -> TaskRecord:
        """The task ended with ``error``: ``CANCELLED``, ``TIMEOUT`` or ``FAILED``, with its envelope."""
        return dataclasses.replace(
            self, status=TaskState.for_error(error), finished_at=utc_timestamp(), error=error.to_body()
        )

    def to_json(self, *, with_token: bool = False, with_response: bool = True) -> dict[str, Any]:
        """What ``GET /public/api/v1/tasks/{taskId}`` answers; ``with_token`` (for storage) adds the token,
        ``with_response=False`` leaves the response out (the task list's summaries)."""
        data: dict[str, Any] = {
            "taskId": self.task_id,
            "serviceId": self.service_id,
            "endpointId": self.endpoint_id,
            "status": self.status.value,
            "submittedAt": self.submitted_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.status is TaskState.DONE and with_response:
            data["response"] = self.response
        if self.error is not None:
            data["error"] = self.error
        if with_token:
            data["token"] = self.token
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRecord:
        """Raises ``ValueError`` (or ``KeyError``, ``TypeError``) for data that is not a task record."""
        return cls(
            task_id=checked_task_id(data["taskId"]),
            service_id=data["serviceId"],
            endpoint_id=data["endpointId"],
            status=TaskState(data["status"]),
            submitted_at=data["submittedAt"],
            started_at=data.get("startedAt"),
            finished_at=data.get("finishedAt"),
            response=data.get("response"),
            error=data.get("error"),
            token=str(data.get("token", "")),
        )


class TaskStore(abc.ABC):
    """Where task records are kept. ``get`` answers ``None`` for an unknown or malformed id."""

    def get(self, task_id: str) -> TaskRecord | None:
        """The record, or ``None`` for an unknown or malformed id (a malformed one is never looked up)."""
        return self._read(task_id) if TASK_ID.fullmatch(task_id) else None

    def put(self, record: TaskRecord) -> None:
        """Keep ``record``; raises ``ValueError`` for a malformed id (it never reaches the storage)."""
        checked_task_id(record.task_id)
        self._write(record)

    @abc.abstractmethod
    def _read(self, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def _write(self, record: TaskRecord) -> None: ...

    @abc.abstractmethod
    def records(self) -> Iterator[TaskRecord]:
        """Every record, in no particular order."""

    def update(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        """Replace a record by ``change(record)`` unless it is final; returns the record as it now is."""
        record = self.get(task_id)
        if record is None or record.status.is_final:
            return record
        record = change(record)
        self.put(record)
        return record

    def list(self, service_id: str = "", endpoint_id: str = "", status: TaskState | None = None) -> list[TaskRecord]:
        """The records matching every given filter, oldest first."""
        matching = [
            record
            for record in self.records()
            if (not service_id or record.service_id == service_id)
            and (not endpoint_id or record.endpoint_id == endpoint_id)
            and (status is None or record.status is status)
        ]
        return sorted(matching, key=lambda record: (record.submitted_at, record.task_id))


class MemoryTaskStore(TaskStore):
    """Records in this process (``chalice local`` and ``chalice.test.Client``). Thread-safe."""

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._lock = threading.RLock()

    def _read(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            return self._records.get(task_id)

    def _write(self, record: TaskRecord) -> None:
        with self._lock:
            self._records[record.task_id] = record

    def records(self) -> Iterator[TaskRecord]:
        with self._lock:
            return iter(list(self._records.values()))

    def update(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self._lock:
            return super().update(task_id, change)


class S3TaskStore(TaskStore):
    """Records as ``tasks/<taskId>.json`` in an S3 bucket (on AWS; see ``infra/task-bucket.yaml``)."""

    def __init__(self, bucket: str):
        from ._forward import aws_client

        self.bucket = bucket
        self._s3 = aws_client("s3")

    def _read(self, task_id: str) -> TaskRecord | None:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=f"tasks/{task_id}.json")["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            return None
        return TaskRecord.from_json(json.loads(body))

    def _write(self, record: TaskRecord) -> None:
        body = json.dumps(record.to_json(with_token=True)).encode()
        self._s3.put_object(Bucket=self.bucket, Key=f"tasks/{record.task_id}.json", Body=body)

    def records(self) -> Iterator[TaskRecord]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="tasks/"):
            for item in page.get("Contents", []):
                task_id = item["Key"].removeprefix("tasks/").removesuffix(".json")
                record = self.get(task_id)
                if record is not None:
                    yield record


#: Where task records are kept on AWS (see ``infra/task-bucket.yaml``): the stage's environment variable.
TASK_BUCKET_VARIABLE = "LAMBDAPOOL_TASK_BUCKET"


def task_bucket() -> str:
    """The bucket this function keeps task records in; raises :class:`ConfigurationError` without one."""
    bucket = os.environ.get(TASK_BUCKET_VARIABLE)
    if not bucket:
        raise ConfigurationError(
            f"tasks need a bucket on AWS: {TASK_BUCKET_VARIABLE} is not set",
            f"deploy infra/task-bucket.yaml and set {TASK_BUCKET_VARIABLE} in the stage's environment_variables",
        )
    return bucket


def task_event(record: TaskRecord, bucket: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda event that carries a submitted task to the endpoint's function."""
    envelope = {"taskId": record.task_id, "bucket": bucket, "token": record.token}
    return {TASK_KEY: envelope, "arguments": dict(arguments)}


def run_task(
    endpoint: Endpoint,
    task_id: str,
    arguments: Mapping[str, Any],
    store: TaskStore,
    invocation: InvocationContext,
) -> TaskRecord | None:
    """Run a submitted task and record its state: RUNNING, then DONE, FAILED or TIMEOUT (just before the
    function's own time runs out, since Lambda gives no chance to record it after). A task cancelled
    meanwhile keeps its CANCELLED state. Returns the final record (``None`` for an unknown task)."""
    from ._invocation import call_endpoint

    record = store.update(task_id, TaskRecord.started)
    if record is None or record.status.is_final:
        return record

    def timed_out() -> None:
        store.update(task_id, lambda latest: latest.ended_with(Timeout.call(endpoint.where, endpoint.timeout_s)))

    timer = threading.Timer(max(0.0, invocation.remaining_time_ms / 1000 - 1.0), timed_out)
    timer.start()
    outcome: bytes | LambdapoolError
    try:
        outcome = call_endpoint(endpoint, arguments, invocation)
    except LambdapoolError as error:
        outcome = error
    finally:
        timer.cancel()
        timer.join()

    def final(latest: TaskRecord) -> TaskRecord:
        if isinstance(outcome, LambdapoolError):
            return latest.ended_with(outcome)
        return latest.succeeded(json.loads(outcome))

    return store.update(task_id, final)


def run_task_event(endpoint: Endpoint, event: Mapping[str, Any], invocation: InvocationContext) -> dict[str, Any]:
    """Run the task an asynchronous invocation carries (see :func:`task_event`); returns its final record."""
    envelope = event[TASK_KEY]
    if not isinstance(envelope, dict):
        raise BadRequest("the task envelope is not an object")
    bucket = task_bucket()  # the function's own setting: an envelope never chooses where records are written
    if envelope.get("bucket") != bucket:
        raise BadRequest(f"the task envelope names a bucket other than {TASK_BUCKET_VARIABLE}")
    store = S3TaskStore(bucket)
    task_id = str(envelope.get("taskId", ""))
    submitted = store.get(task_id)
    if submitted is None or not hmac.compare_digest(submitted.token, str(envelope.get("token", ""))):
        raise BadRequest("the task envelope does not match a submitted task")
    arguments = endpoint.parameters.bind(event.get("arguments") or {})
    record = run_task(endpoint, task_id, arguments, store, invocation)
    return record.to_json() if record is not None else {"taskId": task_id, "status": TaskState.FAILED.value}
