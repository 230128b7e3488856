"""A pipeline's processes and its ``/tmp``, read from ``/proc``: the tree the function started (found
through ``/proc``, since the fork server, not the emulator, is the pipeline's parent), its memory, signals
sent without mistaking a reused pid, and the private directory a pipeline gets as ``/tmp``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: How often a running call's ``/tmp`` is measured (walking a directory costs more than reading memory).
TMP_CHECK_INTERVAL_S = 1.0
#: The longest path a pipeline's ``/tmp`` may have: programs create Unix sockets in ``TMPDIR`` (Python's
#: ``multiprocessing`` managers bind ``$TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX``, 32 more characters), and
#: Linux refuses socket paths over 107 bytes.
MAX_TMP_DIR_CHARS = 72
#: How old a scan of ``/proc`` may be when measuring memory (not when killing): one scan serves every pipeline
#: the supervisor looks at in one round.
SCAN_MAX_AGE_S = 0.02
#: Stopping a pipeline's processes looks for new ones at most this many times (against a fork bomb).
MAX_STOP_ROUNDS = 100
#: ``/proc/<pid>/task/<tid>/children`` exists (``CONFIG_PROC_CHILDREN``); without it, children are found by
#: scanning every process's parent.
_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def read_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (what Lambda counts), or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def read_private_bytes(pid: int) -> int:
    """The memory only ``pid`` holds (its private pages, from ``smaps_rollup``): what a process adds to the
    pipeline that started it, pages a forked child still shares with it counting once. Its resident memory
    where that file cannot be read; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        return read_rss_bytes(pid) or 0
    private_kb = sum(int(line.split()[1]) for line in lines if line.startswith((b"Private_Clean:", b"Private_Dirty:")))
    return private_kb * 1024


class ProcessStat(NamedTuple):
    """What ``/proc/<pid>/stat`` says of a process that the tree walks need."""

    ppid: int
    #: When the process started (clock ticks since boot): with its pid, what tells it from a later process
    #: given the same pid once it has been reaped.
    start_ticks: int
    #: ``R``, ``S``, ``T`` (stopped), ``Z`` (a zombie: ended, not yet reaped)...
    state: str
    #: The session the process belongs to (its leader's pid).
    session: int = 0


#: A process: its pid and :attr:`ProcessStat.start_ticks`.
Process = tuple[int, int]


def read_stat(pid: int) -> ProcessStat | None:
    """``pid``'s parent, start time, state and session, or ``None`` if there is no such process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
        fields = data[data.rindex(b")") + 2 :].split()  # the command name, in parentheses, may hold anything
        return ProcessStat(int(fields[1]), int(fields[19]), fields[0].decode(), int(fields[3]))
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


class _LiveProcesses:
    """The processes as they are now, each child found in its parent's ``/proc/<pid>/task/<tid>/children``."""

    @staticmethod
    def stat(pid: int) -> ProcessStat | None:
        return read_stat(pid)

    @staticmethod
    def children(pid: int) -> list[int]:
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        found: list[int] = []
        for tid in threads:  # a child belongs to the thread that started it
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as children:
                    found += map(int, children.read().split())
            except (OSError, ValueError):
                continue
        return found


class _ScannedProcesses:
    """Every process, read once from ``/proc/*/stat`` (where the children files are missing)."""

    def __init__(self) -> None:
        self.taken = time.monotonic()
        self._stats: dict[int, ProcessStat] = {}
        self._children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit() and (stat := read_stat(int(name))) is not None:
                self._stats[int(name)] = stat
                self._children.setdefault(stat.ppid, []).append(int(name))

    def stat(self, pid: int) -> ProcessStat | None:
        return self._stats.get(pid)

    def children(self, pid: int) -> list[int]:
        return self._children.get(pid, [])


class _Scans:
    """The latest :class:`_ScannedProcesses`, shared by every pipeline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: _ScannedProcesses | None = None

    def get(self, max_age_s: float) -> _ScannedProcesses:
        with self._lock:
            if self._latest is None or time.monotonic() - self._latest.taken > max_age_s:
                self._latest = _ScannedProcesses()
            return self._latest


_LIVE = _LiveProcesses()
_SCANS = _Scans()


def process_table(max_age_s: float) -> _LiveProcesses | _ScannedProcesses:
    """A view of the processes: live, or a scan at most ``max_age_s`` old."""
    return _LIVE if _CHILDREN_FILES else _SCANS.get(max_age_s)


def is_running(stat: ProcessStat | None, process: Process) -> bool:
    """Whether ``stat`` (read for ``process``'s pid) is ``process``, still running (stopped counts, a zombie
    does not)."""
    return stat is not None and stat.start_ticks == process[1] and stat.state not in ("Z", "X")


def descendants(processes: _LiveProcesses | _ScannedProcesses, roots: Iterable[Process]) -> list[Process]:
    """The running descendants of ``roots`` (themselves excluded), parents before their children."""
    frontier = [pid for pid, _ in roots]
    seen = set(frontier)
    found: list[Process] = []
    while frontier:
        parents, frontier = frontier, []
        for parent in parents:
            for child in processes.children(parent):
                if child in seen:
                    continue
                stat = processes.stat(child)
                if stat is None or stat.ppid != parent or stat.state in ("Z", "X"):
                    continue  # gone, moved to another parent since it was listed, or ended
                seen.add(child)
                found.append((child, stat.start_ticks))
                frontier.append(child)
    return found


def session_members(session_id: int) -> list[Process]:
    """The running processes of session ``session_id`` but its leader: what a pipeline (a session leader)
    started, even those that left its tree because their parent ended first, unless they made a session of
    their own. One walk of ``/proc``: for when a pipeline ends, not for every call. Linux gives no new
    process the pid of a session that still has members, so the id cannot name someone else's session."""
    found: list[Process] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == session_id:
            continue
        stat = read_stat(int(name))
        if stat is not None and stat.session == session_id and is_running(stat, (int(name), stat.start_ticks)):
            found.append((int(name), stat.start_ticks))
    return found


def signal_process(process: Process, number: signal.Signals) -> None:
    """Send signal ``number`` to ``process`` if it still runs (not to a later process given its pid)."""
    pid = process[0]
    pidfd = None
    try:
        if hasattr(os, "pidfd_open"):
            pidfd = os.pidfd_open(pid)  # from here on, the pid cannot name another process for us
        if not is_running(read_stat(pid), process):
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, number)
        else:
            os.kill(pid, number)
    except OSError:  # gone, or not ours to signal
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


def directory_bytes(path: str | Path) -> int:
    """The disk space the files under ``path`` take (allocated blocks, as a full file system counts them;
    symbolic links are not followed)."""
    total = 0
    folders = [str(path)]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(entry.path)
                    except OSError:  # removed while we looked
                        continue
        except OSError:
            continue
    return total


#: How the directory holding one emulator's pipelines' ``/tmp`` directories is named, in the system's
#: temporary directory: ``lambdapool-tmp-<pid>-<random>``, ``<pid>`` the emulator's (see :func:`sweep_tmp_roots`).
TMP_ROOT_PREFIX = "lambdapool-tmp-"


def process_running(pid: int) -> bool:
    """Whether a process ``pid`` exists (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_tmp_root() -> Path:
    """A new directory of this emulator's own, in the system's temporary directory, for its pipelines'
    ``/tmp`` directories: the emulator removes it when it stops, its fork server when the emulator dies, and
    :func:`sweep_tmp_roots` when both died."""
    return Path(tempfile.mkdtemp(prefix=f"{TMP_ROOT_PREFIX}{os.getpid()}-"))


def sweep_tmp_roots() -> list[Path]:
    """Remove the directories of :func:`new_tmp_root` whose emulator process no longer runs (killed outright
    with its fork server, it could not remove them); returns those removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{TMP_ROOT_PREFIX}*"):
        owner = path.name[len(TMP_ROOT_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not process_running(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def new_tmp_dir(root: Path, label: str) -> Iterator[Path]:
    """A new, empty, private directory in ``root`` (see :func:`new_tmp_root`) to be pipeline ``label``'s
    ``/tmp`` (its :class:`Pipeline` then owns it), removed if the block raises (no pipeline started). Its
    name begins with as much of ``label`` as keeps its path within :data:`MAX_TMP_DIR_CHARS`."""
    room = MAX_TMP_DIR_CHARS - len(f"{root}/-XXXXXXXX")
    path = Path(tempfile.mkdtemp(prefix=f"{label[: max(0, room)]}-", dir=root))
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
