"""Reload on change: watch a project's files (with watchfiles) and report each settled burst of changes.

What a reload watches is what describes the project: ``app.py``, ``chalicelib/``, the pool files under
``config/services/`` and ``.chalice/config.json``. The emulator's own state (``.lambdapool/``), caches and
editors' scratch files are ignored. :class:`Reloader` owns one thread, stopped and joined by :meth:`close`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("lambdapool.reload")

#: How long changes must settle before a reload (an editor's save is often several writes).
DEBOUNCE_MS = 300


def watched(project_dir: Path, path: str) -> bool:
    """Whether a change to ``path`` changes what the project declares or runs."""
    try:
        relative = Path(path).resolve().relative_to(project_dir)
    except ValueError:
        return False
    parts = relative.parts
    if not parts or any(part == "__pycache__" or part.startswith(".#") for part in parts):
        return False
    if parts == ("app.py",) or parts == (".chalice", "config.json"):
        return True
    if parts[0] == "chalicelib":
        return not parts[-1].endswith((".pyc", "~", ".swp"))
    return parts[:2] == ("config", "services") and parts[-1].endswith(".json")


class Reloader:
    """Watches ``project_dir`` and calls ``on_change(paths)`` (project-relative, sorted) after each settled
    burst of changes, from its own thread."""

    def __init__(self, project_dir: Path, on_change: Callable[[list[str]], object]):
        self.project_dir = project_dir.resolve()
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once the watch is in place (changes from then on are seen)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lambdapool-reload")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        import watchfiles

        def relevant(_change: Any, path: str) -> bool:
            return watched(self.project_dir, path)

        try:
            for changes in watchfiles.watch(
                self.project_dir,
                watch_filter=relevant,
                debounce=DEBOUNCE_MS,
                step=50,
                rust_timeout=200,
                yield_on_timeout=True,
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                self.ready.set()
                if not changes:
                    continue
                paths = sorted({str(Path(path).resolve().relative_to(self.project_dir)) for _, path in changes})
                try:
                    self._on_change(paths)
                except Exception:
                    log.exception("reloading after changes to %s failed", ", ".join(paths))
        except Exception:
            log.exception("watching %s for changes failed: reload is off", self.project_dir)
        finally:
            self.ready.set()


@dataclasses.dataclass
class ReloadRecord:
    """What the status page says of reloads: how many took, and the last attempt."""

    enabled: bool = False
    generation: int = 0
    last: dict[str, Any] | None = None

    def succeeded(self, changed: Iterable[str], endpoints: int) -> None:
        self.generation += 1
        self.last = {"at": _now(), "ok": True, "changed": list(changed), "endpoints": endpoints, "error": None}

    def failed(self, changed: Iterable[str], error: str) -> None:
        self.last = {"at": _now(), "ok": False, "changed": list(changed), "error": error}

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "generation": self.generation, "last": self.last}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
