"""A test project whose endpoints misbehave on purpose: each shows one of the emulator's guarantees."""

import os
import signal
import sys
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="behaviours")

# Init code: counts its own runs, and leaves a line per run in INIT_LOG (when the test sets it).
INIT_RUNS = 0
INIT_RUNS += 1
if os.environ.get("INIT_LOG"):
    with open(os.environ["INIT_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")

if os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "").endswith("-b-doomed"):
    raise RuntimeError("init failed on purpose")  # only in the pipelines of the endpoint 'doomed'

svc = Service("b")
secured = Service("secured", api_keys=["s3cr3t-key", "other-key"])


def _wait_for(path: str, limit_s: float = 60.0) -> None:
    """Block until the test creates ``path`` (its way of letting a call finish)."""
    deadline = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.002)


@svc.function(pool=Pool(floor=1, ceil=2, cruise=1, queue=2, timeout_ms=30_000))
def gated(tag: str, gate: str, log: str):
    """Records that it started (in ``log``), then waits for ``gate``."""
    with open(log, "a") as handle:
        handle.write(f"{tag}\n")
    _wait_for(gate)
    return {"tag": tag, "pid": os.getpid()}


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=1))
def gated_one(tag: str, gate: str, log: str):
    """One pipeline: records its tag (in ``log``) once ``gate`` exists."""
    _wait_for(gate)
    with open(log, "a") as out:
        out.write(f"{tag}\n")
    return tag


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=1, timeout_ms=200))
def gated_short_queue(gate: str):
    _wait_for(gate)
    return "done"


@svc.function(pool=Pool(floor=1, ceil=2, cruise=1, queue=4))
def whoami(gate: str = ""):
    if gate:
        _wait_for(gate)
    return {"pid": os.getpid(), "initRuns": INIT_RUNS}


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4))
def fail(message: str = "boom"):
    raise ValueError(message)


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4))
def chatty(lines: int = 1, fail: bool = False, context=None):
    for number in range(lines):
        print(f"line {number} of {context.aws_request_id}")
    context.logger.warning("logged through the context")
    sys.stderr.write("to stderr\n")
    if fail:
        raise KeyError("missing")
    return lines


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4))
def hard_exit(code: int = 3):
    os._exit(code)


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4))
def system_exit():
    sys.exit(7)


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4))
def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4), timeout_s=1)
def hang(hang: bool = True):
    while hang:
        time.sleep(0.05)
    return {"pid": os.getpid()}


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4), timeout_s=1)
def fork_and_hang(gate: str):
    """Forks a child that inherits the pipeline's socket and outlives the pipeline until the test opens
    ``gate`` (its pid is written to ``gate + '.pid'``), then hangs past timeout_s."""
    child = os.fork()
    if child == 0:
        try:
            _wait_for(gate, limit_s=120)  # longer than any client waits for the answer
        finally:
            os._exit(0)
    with open(gate + ".pid", "w") as pid_file:
        pid_file.write(str(child))
    while True:
        time.sleep(0.05)


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4), memory_mb=128)
def hog(megabytes: int = 0, hold_s: float = 0.0):
    block = b"x" * (megabytes * 2**20)
    time.sleep(hold_s)
    return {"pid": os.getpid(), "held": len(block)}


@svc.function(pool=Pool(floor=0, ceil=1, cruise=0, queue=4))
def zero():
    """Scales to zero: answers its pipeline's pid."""
    return os.getpid()


@svc.function()
def big(megabytes: float = 7.0):
    """A result of about ``megabytes`` MB."""
    return "x" * int(megabytes * 2**20)


@svc.function(outputs=["a", "b"])
def pair(n: int = 2):
    return tuple(range(n))


@svc.function()
def not_json():
    return {1, 2, 3}


@svc.function()
def nan():
    return float("nan")


@svc.function()
def echo(x=None, context=None, **rest):
    return {
        "x": x,
        "rest": rest,
        "endpoint": context.endpoint_id,
        "remainingMs": context.get_remaining_time_in_millis(),
    }


@svc.function(pool=Pool(floor=1, ceil=2, cruise=1, queue=2))
def doomed():
    return "never: init fails in this endpoint's pipelines"


@secured.function()
def hello(name: str = "world"):
    return f"hello {name}"


mount(app, svc, secured)
