"""A test project whose functions use what a Lambda execution environment holds besides the function's own
process: child processes (counted in its memory, ended with it) and its private /tmp."""

import json
import os
import subprocess
import sys
import tempfile
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="isolation")
svc = Service("iso")

ONE = Pool(floor=1, ceil=1, cruise=1)
#: Where tempfile puts files while init code runs (the cold start).
INIT_TMP = tempfile.gettempdir()
#: A child that holds ``argv[1]`` megabytes, says so, and sleeps.
HOLD = "import sys, time; block = b'x' * (int(sys.argv[1]) * 2**20); print('holding', flush=True); time.sleep(120)"


def _record(path, pid):
    """Write ``pid`` and its start time (what tells it from a later process with its pid) to ``path``."""
    with open(f"/proc/{pid}/stat") as stat:
        start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open(path + ".part", "w") as record:
        json.dump({"pid": pid, "startTicks": start_ticks}, record)
    os.replace(path + ".part", path)


def _wait_for(predicate, limit_s=30.0):
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("waited too long")
        time.sleep(0.01)


def _scratch(name, context, barrier="", parties=1, exit_code=None):
    """Write ``name`` in /tmp; with a ``barrier`` folder, wait until ``parties`` calls have written theirs
    (each is then on its own pipeline); exit with ``exit_code`` if given; describe /tmp."""
    tmp = tempfile.gettempdir()
    with open(os.path.join(tmp, name), "w") as scratch:
        scratch.write(context.pipeline_id)
    if barrier:
        open(os.path.join(barrier, name), "w").close()
        _wait_for(lambda: len(os.listdir(barrier)) >= parties)
    if exit_code is not None:
        os._exit(exit_code)
    return {
        "pipeline": context.pipeline_id,
        "tmp": tmp,
        "initTmp": INIT_TMP,
        "variables": {name: os.environ.get(name) for name in ("TMPDIR", "TMP", "TEMP")},
        "files": sorted(os.listdir(tmp)),
    }


@svc.function(pool=ONE)
def scratch(name: str, exit_code: int | None = None, context=None):
    return _scratch(name, context, exit_code=exit_code)


@svc.function(pool=Pool(floor=1, ceil=2, cruise=1))
def pair(name: str, barrier: str, context=None):
    return _scratch(name, context, barrier, parties=2)


@svc.function(pool=ONE, memory_mb=128)
def child_hog(record: str, megabytes: int = 300):
    """Start a child process that holds ``megabytes``, and wait for it."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(megabytes)], stdout=subprocess.PIPE)
    _record(record, child.pid)
    child.stdout.readline()
    child.wait()
    return {"survived": True}


@svc.function(pool=ONE, memory_mb=128)
def forks(children: int = 8, hold_s: float = 1.0, ballast_mb: int = 48):
    """Fork ``children`` that share the pipeline's memory (``ballast_mb`` of it written, so resident) and
    sleep ``hold_s``; answers what their resident memory adds up to, the pipeline's included (what counting
    each process's resident memory would say)."""
    ballast = bytearray(b"\x01") * (ballast_mb * 2**20)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            time.sleep(hold_s)
            os._exit(0)
        pids.append(pid)
    page = os.sysconf("SC_PAGE_SIZE")
    resident = 0
    for pid in [os.getpid(), *pids]:
        with open(f"/proc/{pid}/statm") as statm:
            resident += int(statm.read().split()[1]) * page
    for pid in pids:
        os.waitpid(pid, 0)
    return {"residentSum": resident, "ballast": len(ballast)}


@svc.function(pool=ONE)
def orphan(record: str, gate: str):
    """Start a sleeping child, then, once ``gate`` exists, exit without ending it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    _record(record, child.pid)
    _wait_for(lambda: os.path.exists(gate))
    os._exit(1)


@svc.function(pool=ONE, timeout_s=2)
def fork_and_hang(record: str):
    """Fork a child that starts a sleeping grandchild and sleeps too, then hang past timeout_s."""
    child = os.fork()
    if child == 0:
        try:
            grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            _record(record + ".grandchild", grandchild.pid)
            time.sleep(120)
        finally:
            os._exit(0)
    _record(record, child)
    _wait_for(lambda: os.path.exists(record + ".grandchild"))
    with open(os.path.join(tempfile.gettempdir(), "left-behind"), "w"):
        pass
    while True:
        time.sleep(0.05)


@svc.function(pool=ONE, timeout_s=30)
def fill_tmp(megabytes: int = 600):
    """Take ``megabytes`` of /tmp, then wait."""
    with open(os.path.join(tempfile.gettempdir(), "big"), "wb") as big:
        try:
            os.posix_fallocate(big.fileno(), 0, megabytes * 2**20)
        except OSError:  # a file system without fallocate: write it
            for _ in range(megabytes):
                big.write(b"\0" * 2**20)
            big.flush()
    while True:
        time.sleep(0.05)


mount(app, svc)
