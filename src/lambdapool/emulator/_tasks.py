"""Asynchronous tasks (``/submit``) in the emulator: records kept on disk, work through the pools.

A task's record is one JSON file in the state directory, replaced atomically at every change, so finished
results survive a restart of the emulator. Tasks that were queued or running when the emulator stopped are
recorded ``FAILED`` when it starts again (the process that ran them is gone).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .._errors import PipelineCrashed
from .._tasks import MemoryTaskStore, TaskRecord, TaskStore
from ._delivery import Deliveries, Delivery
from ._runtime import EndpointRuntime

log = logging.getLogger("lambdapool.tasks")


class FileTaskStore(MemoryTaskStore):
    """Task records held in memory and written as JSON files in ``directory``. Thread-safe."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        interrupted = PipelineCrashed.interrupted()
        for path in directory.glob("*.json"):
            try:
                record = TaskRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable task file %s", path)
                continue
            if record.status.is_final:
                super()._write(record)  # already on disk as it is
            else:
                self.put(record.ended_with(interrupted))

    def _write(self, record: TaskRecord) -> None:
        with self._lock:
            super()._write(record)
            path = self.directory / f"{record.task_id}.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record.to_json(with_token=True)), encoding="utf-8")
            os.replace(temporary, path)


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
