"""A test project for supervision: pools with idle floor pipelines, one that scales to zero, a call held open."""

import os
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="supervised")
svc = Service("s")


@svc.function(pool=Pool(floor=2, ceil=4, cruise=2, queue=4))
def warm():
    return {"pid": os.getpid()}


@svc.function(pool=Pool(floor=0, ceil=2, cruise=0, queue=4))
def cold():
    return {"pid": os.getpid()}


@svc.function(pool=Pool(floor=1, ceil=2, cruise=1, queue=4))
def held(gate: str = ""):
    """Waits until the test creates ``gate`` (when given)."""
    deadline = time.monotonic() + 60
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"pid": os.getpid()}


mount(app, svc)
