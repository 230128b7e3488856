"""A test project of triggers: S3 filters, two endpoints on one bucket, failures, and a gated schedule."""

import json
import os
import time

from chalice import Chalice

from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="triggers")
svc = Service("t")


def record(name, event):
    """Append what an endpoint received to the log the test reads (EVENTS_LOG)."""
    line = {"endpoint": name, "bucket": event.bucket, "key": event.key}
    with open(os.environ["EVENTS_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(line, ensure_ascii=False) + "\n")
    return line


@svc.on_s3_event("watched", prefix="in/", suffix=".csv")
def csv_in(event):
    return record("csv_in", event)


@svc.on_s3_event("watched", prefix="in/")
def anything_in(event):
    return record("anything_in", event)


@svc.on_s3_event("watched", events=["s3:ObjectRemoved:*"])
def removed(event):
    return record("removed", event)


@svc.on_s3_event("fragile", timeout_s=1, pool=Pool(floor=1, ceil=1, cruise=1, queue=8))
def fragile(event):
    if "boom" in event.key:
        raise RuntimeError(f"cannot handle {event.key}")
    while "hang" in event.key:
        time.sleep(0.05)
    return record("fragile", event)


@svc.schedule("rate(1 day)", pool=Pool(floor=1, ceil=1, cruise=1, queue=2))
def nightly(event):
    gate = os.environ.get("SCHEDULE_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    return {
        "detail_type": event.detail_type,
        "source": event.source,
        "time": event.time,
        "resources": event.resources,
        "pid": os.getpid(),
    }


@svc.function()
def plain():
    return "not a trigger"


mount(app, svc)
