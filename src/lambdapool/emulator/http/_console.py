"""The console log of ``lambdapool local``: one line per request, and what goes wrong, on stderr.

A request's thread only queues its record (:meth:`ConsoleLog.emit` takes no lock and formats nothing for a
plain message); a thread of its own formats what has queued and writes it in one write, at most every
:data:`FLUSH_INTERVAL_S`. Writing each line as it came woke that thread on every request and made it compete
for the GIL with the threads serving the next ones. :meth:`ConsoleLog.stop` writes what is left and ends the
thread, so nothing logged is lost at exit.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import TextIO

#: How long the writer lets lines gather before it writes them (the most a line waits to be seen).
FLUSH_INTERVAL_S = 0.05
#: ``12:03:04 POST /public/api/v1/demo/add/run  [demo/add#1] warm  200  3.21 ms``
TIME_FORMAT = "%H:%M:%S"

_Entry = tuple[float, str] | str | None  # (when, message) for a plain record, a formatted line, or the end


class ConsoleLog(logging.Handler):
    """A logging handler writing ``HH:MM:SS message`` lines to ``stream`` (``sys.stderr`` as it is when a batch
    is written, if not given) from a thread of its own; see the module docstring. Stopped with :meth:`stop`."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = FLUSH_INTERVAL_S):
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt=TIME_FORMAT))
        self._stream = stream
        self._interval_s = interval_s
        self._entries: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._stopping = threading.Event()  # set by stop(): from then on, records are written as they come
        self._second = -1  # the second _stamp was formatted for
        self._stamp = ""
        self._thread = threading.Thread(target=self._write_batches, name="lambdapool-console", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record if the filters pass it; no lock is taken (a queue is safe on its own)."""
        passed = bool(self.filter(record))
        if passed:
            self.emit(record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.args or record.exc_info or record.stack_info:
                entry: tuple[float, str] | str = self.format(record)  # formatted now: its arguments may change later
            else:
                entry = (record.created, str(record.msg))
            if self._stopping.is_set():
                self._write(self._line(entry))
            else:
                self._entries.put(entry)
        except Exception:
            self.handleError(record)

    def stop(self) -> None:
        """Write what is queued and end the writer thread. Safe to call twice."""
        self._stopping.set()
        if self._thread.is_alive():
            self._entries.put(None)
            self._thread.join()
        self._write_batch(self._drain([]))  # queued as the writer ended

    def close(self) -> None:
        self.stop()
        super().close()

    def _write_batches(self) -> None:
        ending = False
        while not ending:
            first = self._entries.get()
            self._stopping.wait(self._interval_s)  # let the lines of the next requests join this write
            entries = self._drain([first])
            ending = None in entries
            self._write_batch(entries)

    def _drain(self, entries: list[_Entry]) -> list[_Entry]:
        while True:
            try:
                entries.append(self._entries.get_nowait())
            except queue.Empty:
                return entries

    def _write_batch(self, entries: list[_Entry]) -> None:
        lines = [self._line(entry) for entry in entries if entry is not None]
        if lines:
            self._write("".join(lines))

    def _line(self, entry: tuple[float, str] | str) -> str:
        """The entry's line (the time stamp is formatted once per second, not per line)."""
        if isinstance(entry, str):
            return entry + "\n"
        created, message = entry
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(TIME_FORMAT, time.localtime(created))
        return f"{self._stamp} {message}\n"

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # the console is gone (a closed pipe): the emulator goes on
            pass


def log_to_console(level: int = logging.INFO) -> ConsoleLog:
    """Send the process's log records at ``level`` and above to a :class:`ConsoleLog` on stderr. Records lose
    what the console does not show (thread, process and caller), which logging would otherwise find for each."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no walk of the stack per record (logging's own hook)
    console = ConsoleLog()
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(console)
    return console
