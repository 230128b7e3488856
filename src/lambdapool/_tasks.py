"""Asynchronous tasks (``/submit``): run through the endpoint's pool, their state kept on disk.

A task's state is one JSON file in the state directory, replaced atomically at every change, so finished
results survive a restart of the emulator. Tasks that were queued or running when the emulator stopped are
reported ``FAILED`` when it starts again (the process that ran them is gone).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._errors import Cancelled, LambdapoolError, QueueFull, QueueTimeout, Timeout
from ._model import TASK_FINAL_STATES, utc_timestamp
from ._runtime import EndpointRuntime

log = logging.getLogger("lambdapool.tasks")
TASK_ID = re.compile(r"[0-9a-f]{32}")
#: How long a submitted task keeps retrying a full pool, like Lambda's MaximumEventAgeInSeconds default.
MAX_EVENT_AGE_S = 6 * 3600


class TaskStore:
    """Task states as JSON files in ``directory``. Thread-safe."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._tasks: dict[str, dict[str, Any]] = {}
        for path in directory.glob("*.json"):
            try:
                task = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("ignoring unreadable task file %s", path)
                continue
            if task.get("status") not in TASK_FINAL_STATES:
                task.update(
                    status="FAILED",
                    finishedAt=utc_timestamp(),
                    error={
                        "errorType": "PipelineCrashed",
                        "message": "the emulator stopped before the task finished",
                        "detailedMessage": "the task was queued or running when the emulator stopped",
                    },
                )
                self._write(task)
            self._tasks[task["taskId"]] = task

    def create(self, service_id: str, endpoint_id: str) -> dict[str, Any]:
        task: dict[str, Any] = {
            "taskId": uuid.uuid4().hex,
            "serviceId": service_id,
            "endpointId": endpoint_id,
            "status": "QUEUED",
            "submittedAt": utc_timestamp(),
            "startedAt": None,
            "finishedAt": None,
        }
        with self._lock:
            self._tasks[task["taskId"]] = task
            self._write(task)
        return dict(task)

    def update(self, task_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            task = self._tasks[task_id]
            task.update(fields)
            self._write(task)
            return dict(task)

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The task, or ``None`` for an unknown or malformed id (ids never reach the file system unchecked)."""
        if not TASK_ID.fullmatch(task_id):
            return None
        with self._lock:
            task = self._tasks.get(task_id)
            return dict(task) if task is not None else None

    def list(self, **filters: str) -> list[dict[str, Any]]:
        with self._lock:
            tasks = [dict(task) for task in self._tasks.values()]
        wanted = {key: value for key, value in filters.items() if value}
        matching = [task for task in tasks if all(task.get(key) == value for key, value in wanted.items())]
        return sorted(matching, key=lambda task: task["submittedAt"])

    def _write(self, task: dict[str, Any]) -> None:
        path = self.directory / f"{task['taskId']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(task), encoding="utf-8")
        os.replace(temporary, path)


class TaskRunner:
    """Runs submitted tasks in background threads through their endpoint's pool."""

    def __init__(self, store: TaskStore, retry_delay_s: Callable[[int], float] | None = None):
        self.store = store
        self._retry_delay_s = retry_delay_s or (lambda attempt: min(0.05 * 2**attempt, 5.0))
        self._cancelled: dict[str, threading.Event] = {}
        self._runtimes: dict[str, EndpointRuntime] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, runtime: EndpointRuntime, arguments: dict[str, Any]) -> dict[str, Any]:
        """Queue a task for ``runtime`` and return its state (``QUEUED``)."""
        task = self.store.create(runtime.spec.service_id, runtime.spec.endpoint_id)
        task_id = task["taskId"]
        thread = threading.Thread(target=self._run, args=(runtime, task_id, arguments), daemon=True)
        with self._lock:
            self._cancelled[task_id] = threading.Event()
            self._runtimes[task_id] = runtime
            self._threads[task_id] = thread
        thread.start()
        return task

    def cancel(self, task_id: str, wait_s: float = 10.0) -> dict[str, Any] | None:
        """Cancel a queued task or terminate a running one; returns its state once it has ended."""
        with self._lock:
            cancelled = self._cancelled.get(task_id)
            runtime = self._runtimes.get(task_id)
            thread = self._threads.get(task_id)
        if cancelled is not None and runtime is not None and thread is not None:
            cancelled.set()
            runtime.cancel(task_id)
            thread.join(wait_s)
        return self.store.get(task_id)

    def _run(self, runtime: EndpointRuntime, task_id: str, arguments: dict[str, Any]) -> None:
        cancelled = self._cancelled[task_id]
        started_at = time.monotonic()
        attempt = 0
        try:
            while True:
                if cancelled.is_set():
                    raise Cancelled("the task was cancelled before it started")
                try:
                    result = runtime.call(
                        arguments,
                        request_id=task_id,
                        on_start=lambda: self.store.update(task_id, status="RUNNING", startedAt=utc_timestamp()),
                    )
                    break
                except (QueueFull, QueueTimeout):
                    # The pool is saturated: like Lambda's event queue, keep the task and try again.
                    if time.monotonic() - started_at > MAX_EVENT_AGE_S:
                        raise
                    cancelled.wait(self._retry_delay_s(attempt))
                    attempt += 1
            self.store.update(task_id, status="DONE", finishedAt=utc_timestamp(), response=json.loads(result.result))
        except LambdapoolError as error:
            status = (
                "CANCELLED" if isinstance(error, Cancelled) else "TIMEOUT" if isinstance(error, Timeout) else "FAILED"
            )
            self.store.update(task_id, status=status, finishedAt=utc_timestamp(), error=error.to_body())
        finally:
            with self._lock:
                self._cancelled.pop(task_id, None)
                self._runtimes.pop(task_id, None)
                self._threads.pop(task_id, None)
