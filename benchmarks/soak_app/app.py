"""The soak project: endpoints that succeed, fail and misbehave on purpose, for benchmarks/soak.py.

Every pool holds more than the soak's clients (``ceil + queue`` >= 32, ``timeout_ms`` a minute), so a correct
emulator never has to throttle them: every answer is the one its endpoint calls for, and anything else is a
bug the soak reports.
"""

import ctypes
import os
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="soak")
soak = Service("soak")

PATIENT = {"queue": 32, "timeout_ms": 60_000}


@soak.function(pool=Pool(floor=2, ceil=8, cruise=4, **PATIENT))
def ok(n: int):
    """Succeeds at once."""
    return {"n": n, "square": n * n}


@soak.function(pool=Pool(floor=1, ceil=8, cruise=2, **PATIENT))
def slow(ms: int):
    """Succeeds after ``ms`` milliseconds."""
    time.sleep(ms / 1000)
    return {"slept": ms}


@soak.function(pool=Pool(floor=1, ceil=4, cruise=1, **PATIENT))
def boom(n: int):
    """Raises: 500 ValueError."""
    raise ValueError(f"boom {n}")


@soak.function(pool=Pool(floor=1, ceil=4, cruise=1, **PATIENT))
def exit_hard():
    """The process exits under the call: 502 PipelineCrashed."""
    os._exit(3)


@soak.function(pool=Pool(floor=1, ceil=4, cruise=1, **PATIENT))
def segfault():
    """Reads address 0: the process dies of SIGSEGV, 502 PipelineCrashed."""
    return ctypes.string_at(0)


@soak.function(pool=Pool(floor=1, ceil=4, cruise=1, **PATIENT), timeout_s=1)
def hang():
    """Runs past its timeout_s: 504 Timeout (the pipeline is killed and replaced)."""
    while True:
        time.sleep(0.05)


@soak.function(pool=Pool(floor=1, ceil=2, cruise=1, **PATIENT), memory_mb=128)
def hog(megabytes: int = 256):
    """Allocates past memory_mb: 502 OutOfMemory."""
    block = b"x" * (megabytes * 2**20)
    time.sleep(0.5)
    return len(block)


mount(app, soak)
