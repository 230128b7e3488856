"""Supervising helper processes (the fork server, moto's server): restart one that dies, without looping.

A process that ran a while before dying is restarted at once; one that keeps dying (or failing to start)
is retried with a doubling wait, then given up on with an error line saying what that costs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ProcessExit:
    """How a process ended: the code it exited with, or the signal that killed it (exactly one is set)."""

    code: int | None = None
    signal_number: int | None = None

    @classmethod
    def of_wait_status(cls, status: int) -> ProcessExit:
        """From a ``waitpid`` status (what the fork server reports of a pipeline)."""
        if os.WIFSIGNALED(status):
            return cls(signal_number=os.WTERMSIG(status))
        return cls(code=os.WEXITSTATUS(status))

    @classmethod
    def of_returncode(cls, returncode: int) -> ProcessExit:
        """From a :class:`subprocess.Popen` return code (negative: the signal that killed the process)."""
        return cls(signal_number=-returncode) if returncode < 0 else cls(code=returncode)

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed it, if it is one Python knows."""
        try:
            return signal.Signals(self.signal_number) if self.signal_number is not None else None
        except ValueError:
            return None

    def __str__(self) -> str:
        """``exited with code 3``, ``was killed by SIGKILL``."""
        if self.signal_number is None:
            return f"exited with code {self.code}"
        known = self.signal
        return f"was killed by {known.name if known is not None else f'signal {self.signal_number}'}"


def describe_returncode(returncode: int | None) -> str:
    """A :class:`subprocess.Popen` return code in words (``None``: still running)."""
    return "is still running" if returncode is None else str(ProcessExit.of_returncode(returncode))


class RestartBackoff:
    """When to restart a supervised process that died, so that one that keeps dying is not restarted in a loop.

    A process that ran ``stable_s`` seconds before dying is restarted at once; each further attempt in a row
    (after a failed start, or a process that died sooner) waits twice as long as the one before, from
    ``first_s`` up to ``max_s`` seconds; after ``attempts`` in a row, it is time to give up.
    """

    def __init__(self, attempts: int = 8, stable_s: float = 10.0, first_s: float = 0.25, max_s: float = 8.0):
        self.attempts = attempts
        self.stable_s = stable_s
        self.first_s = first_s
        self.max_s = max_s
        self._in_a_row = 0

    def died(self, lived_s: float) -> None:
        """A process that had run ``lived_s`` seconds died."""
        if lived_s >= self.stable_s:
            self._in_a_row = 0

    def next_wait_s(self) -> float | None:
        """How long to wait before the next attempt (which is counted), or ``None``: give up."""
        if self._in_a_row >= self.attempts:
            return None
        wait_s = 0.0 if self._in_a_row == 0 else min(self.max_s, self.first_s * 2 ** (self._in_a_row - 1))
        self._in_a_row += 1
        return wait_s


def restart_with_backoff(
    logger: logging.Logger,
    what: str,
    backoff: RestartBackoff,
    stopping: threading.Event,
    attempt: Callable[[], str | None],
    impact: str,
) -> bool:
    """Restart a dead process, ``what`` ("the fork server (pid 12) was killed by SIGKILL"), with ``attempt``,
    waiting as ``backoff`` says before each try, until ``stopping`` is set.

    ``attempt`` starts the replacement and returns how it went in words ("restarted it as pid 34"), ``None``
    if it found the supervisor stopping, or raises. Every outcome is logged on ``logger``; giving up is an
    error saying its ``impact``. Returns whether the process was restarted.
    """
    error: Exception | None = None
    while (wait_s := backoff.next_wait_s()) is not None:
        if stopping.wait(wait_s):
            return False
        try:
            restarted = attempt()
        except Exception as exc:  # whatever the start raised: the next attempt may do better
            error = exc
            logger.warning("%s; restarting it failed: %s", what, exc)
            continue
        if restarted is not None:
            logger.warning("%s; %s", what, restarted)
        return restarted is not None
    logger.error(
        "%s; giving up after %d restarts in a row that failed or died within %.0f s%s: %s",
        what,
        backoff.attempts,
        backoff.stable_s,
        f" (last error: {error})" if error is not None else "",
        impact,
    )
    return False
