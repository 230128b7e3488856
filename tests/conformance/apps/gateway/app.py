"""A test project for what API Gateway does to routes: a call held until the test opens a gate, a result
whose size grows when escaped, and an endpoint that takes a large body."""

import os
import time
from pathlib import Path

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="gateway")
svc = Service("gw")


@svc.function(pool=Pool(floor=1, ceil=1, cruise=1, queue=4, timeout_ms=60_000), timeout_s=120)
def held(gate: str):
    """Wait until the file ``gate`` exists (at most 110 s), then write ``gate + ".done"`` and answer."""
    deadline = time.monotonic() + 110
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    Path(gate + ".done").write_text("done")
    return "done"


@svc.function(pool=Pool(floor=0, ceil=2, cruise=0, queue=4), memory_mb=512)
def strings(n: int):
    """``n`` one-letter strings: 4 bytes each in JSON, 6 once escaped into API Gateway's response."""
    return ["a"] * n


@svc.function(pool=Pool(floor=0, ceil=2, cruise=0, queue=4), memory_mb=512)
def size(rows: list):
    return len(rows)


mount(app, svc)
