"""Asynchronous tasks (``/submit``) in the emulator: records kept on disk, work through the pools.

A task's record is one JSON file in the state directory, replaced atomically at every change, so finished
results survive a restart of the emulator; results stay on disk (memory holds the records without them) and
finished records are pruned after a retention period or past a size limit. Tasks that were queued or
running when the emulator stopped are recorded ``FAILED`` when it starts again (the process that ran them
is gone).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._errors import PipelineCrashed
from ..._tasks import MemoryTaskStore, TaskRecord, TaskState, TaskStore
from ..pool._runtime import EndpointRuntime
from ._delivery import Deliveries, Delivery

log = logging.getLogger("lambdapool.tasks")


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long finished tasks are kept (``max_age_s``, from when they finished) and how much disk their
    records may take in all (``max_bytes``: the oldest finished ones go first)."""

    max_age_s: float = 7 * 24 * 3600
    max_bytes: int = 1 << 30


class FileTaskStore(MemoryTaskStore):
    """Task records as JSON files in ``directory``; memory holds each record without its response (which
    is read from disk when asked for). Finished records are pruned by ``retention``. Thread-safe."""

    def __init__(self, directory: Path, retention: Retention | None = None, clock: Callable[[], float] = time.time):
        super().__init__()
        self.directory = directory
        self.retention = retention or Retention()
        self._clock = clock
        self._sizes: dict[str, int] = {}
        directory.mkdir(parents=True, exist_ok=True)
        interrupted = PipelineCrashed.interrupted()
        for path in directory.glob("*.json"):
            try:
                record = TaskRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable task file %s", path)
                continue
            if path.stem != record.task_id:
                log.warning("ignoring task file %s: it holds task %s", path, record.task_id)
                continue
            if record.status.is_final:
                self._keep(record, path.stat().st_size)  # already on disk as it is
            else:
                self.put(record.ended_with(interrupted))
        self.prune()

    def _read(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            record = super()._read(task_id)
        if record is None or record.status is not TaskState.DONE:
            return record
        try:  # the response lives on disk only
            return TaskRecord.from_json(json.loads(self._path(task_id).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return record

    def _write(self, record: TaskRecord) -> None:
        data = json.dumps(record.to_json(with_token=True)).encode()
        with self._lock:
            path = self._path(record.task_id)
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            self._keep(record, len(data))
        if record.status.is_final:
            self.prune()

    def _keep(self, record: TaskRecord, size: int) -> None:
        with self._lock:
            super()._write(dataclasses.replace(record, response=None))
            self._sizes[record.task_id] = size

    def _path(self, task_id: str) -> Path:
        return self.directory / f"{task_id}.json"

    def clear(self) -> None:
        """Forget every record (a test's reset): none is running then."""
        with self._lock:
            for task_id in list(self._records):
                self._path(task_id).unlink(missing_ok=True)
            self._records.clear()
            self._sizes.clear()

    def stored_bytes(self) -> int:
        """What the records take on disk."""
        with self._lock:
            return sum(self._sizes.values())

    def prune(self) -> list[str]:
        """Delete the finished records past the retention period, then the oldest finished ones while the
        records take more than the size limit; returns their ids."""
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._clock() - self.retention.max_age_s))
        with self._lock:
            finished = sorted(
                (record for record in self._records.values() if record.status.is_final),
                key=lambda record: record.finished_at or "",
            )
            total = sum(self._sizes.values())
            doomed = []
            for record in finished:
                if (record.finished_at or "") < cutoff or total > self.retention.max_bytes:
                    doomed.append(record.task_id)
                    total -= self._sizes.get(record.task_id, 0)
            for task_id in doomed:
                self._records.pop(task_id, None)
                self._sizes.pop(task_id, None)
                self._path(task_id).unlink(missing_ok=True)
        return doomed


class TaskRunner:
    """Runs submitted tasks through their endpoint's pool (delivered by ``deliveries``), recording each
    change of state in ``store``."""

    def __init__(self, store: TaskStore, deliveries: Deliveries):
        self.store = store
        self._deliveries = deliveries

    def submit(self, runtime: EndpointRuntime, arguments: dict[str, Any]) -> TaskRecord:
        """Queue a task for ``runtime`` and return its record (``QUEUED``)."""
        record = TaskRecord.new(runtime.spec.service_id, runtime.spec.endpoint_id)
        self.store.put(record)
        task_id = record.task_id
        self._deliveries.submit(
            Delivery(
                runtime,
                arguments,
                request_id=task_id,
                on_start=lambda: self.store.update(task_id, TaskRecord.started),
                on_success=lambda result: self.store.update(
                    task_id, lambda latest: latest.succeeded(json.loads(result.result))
                ),
                on_failure=lambda error: self.store.update(task_id, lambda latest: latest.ended_with(error)),
            )
        )
        return record

    def cancel(self, task_id: str, wait_s: float = 10.0) -> TaskRecord | None:
        """Cancel a queued task or terminate a running one; returns its record once it has ended."""
        delivery = self._deliveries.cancel(task_id)
        if delivery is not None:
            delivery.finished.wait(wait_s)
        return self.store.get(task_id)
