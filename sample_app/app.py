"""The sample project: the NYC 311 estimator of the Chalice chapter, as lambdapool function endpoints.

Run it locally with ``lambdapool local sample_app``, or as a plain Chalice app with ``chalice local`` from
this directory.
"""

import datetime as dt
import json
import os
import time
from pathlib import Path

from chalice import Chalice
from chalicelib import data

from lambdapool import BadRequest, Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="sample")

nyc = Service("311", description="NYC 311 estimates: median days to close a complaint")
demo = Service("demo", description="Small functions that show the pool at work")
# Keys are read at import time: set SAMPLE_API_KEY before starting the emulator to change it.
private = Service(
    "private",
    description="An API-key protected service",
    api_keys=[os.environ.get("SAMPLE_API_KEY", "sample-key")],
)


@nyc.function(
    pool=Pool(floor=1, ceil=8, cruise=2, queue=16, timeout_ms=10_000), timeout_s=10, memory_mb=512, folders=["models"]
)
def predict(complaint_type: str, lat: float = 0.0, lon: float = 0.0):
    """Median days to close a 311 complaint of this type."""
    key = complaint_type.strip().lower()
    model = data.load_medians(MEDIANS)  # the medians job's latest model, once there is one
    if key not in model:
        raise BadRequest(
            f"complaint type {complaint_type!r} is not in the model",
            f"known complaint types: {', '.join(sorted(model))}",
        )
    return {"complaint_type": key, "estimated_time": model[key], "lat": lat, "lon": lon}


# Init code: runs once in every pipeline (the cold start), never per request. As on Dataiku, the managed
# folders declared just above (shipped in the Lambda package by `lambdapool config`) are in the module's
# `folders` global; the medians the app ships with are read from there.
MEDIANS: dict[str, float] = json.loads((Path(folders[0]) / "medians.json").read_text(encoding="utf-8"))  # noqa: F821


@nyc.schedule("rate(1 day)")
def collector(event):
    """Daily: yesterday's complaints into the raw bucket (the chapter's scheduled collector)."""
    today = dt.datetime.fromisoformat(event.time.replace("Z", "+00:00")).date() if event.time else dt.date.today()
    return data.collect(today)


@nyc.on_s3_event(bucket="sample-311-raw", prefix=data.RAW_PREFIX, suffix=".json")
def medians(event):
    """Each new raw file: recompute the medians the 311 endpoint serves (the chapter's S3-triggered job)."""
    return data.compute_medians(event.bucket, event.key)


@nyc.function(outputs=["count", "types"], folders=["models"])
def complaint_types():
    """How many complaint types the model knows, and which."""
    return len(MEDIANS), sorted(MEDIANS)


@demo.function(pool=Pool(floor=1, ceil=8, cruise=2, queue=32))
def add(x: float, y: float):
    """x + y."""
    return x + y


@demo.function()
def api_py_function(z=0, **data):
    """Dataiku's catch-all: any attribute besides z lands in **data."""
    return {"z": z, "data": data, "keys": sorted(data)}


@demo.function()
def divide(x: float, y: float):
    """x / y: dividing by zero shows how an exception is answered (500 ZeroDivisionError)."""
    return x / y


@demo.function(pool=Pool(floor=1, ceil=2, cruise=1, queue=2, timeout_ms=5_000), timeout_s=5)
def slow(seconds: float = 2.0):
    """Sleeps, to watch two pipelines serve, two calls queue and a fifth be turned away."""
    time.sleep(float(seconds))
    return {"slept": float(seconds), "pid": os.getpid()}


@private.function()
def whoami(context):
    """Which pipeline served the call."""
    return {"pipeline": context.pipeline_id, "pid": os.getpid()}


mount(app, nyc, demo, private)
