"""The 311 data cycle of the Chalice chapter, without its internet: complaints are generated locally.

``collect`` writes yesterday's raw complaints into the raw bucket; ``compute_medians`` turns a raw file into
the model (median days to close, per complaint type) in the model bucket; ``load_medians`` reads it back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
from typing import Any

RAW_PREFIX = "raw/"
MODEL_KEY = "model.json"
COMPLAINT_TYPES = {  # typical days to close, around which the generated data scatters
    "appliance": 60.0,
    "blocked driveway": 0.2,
    "dirty conditions": 5.0,
    "heat/hot water": 2.5,
    "illegal parking": 0.2,
    "noise - residential": 0.1,
    "plumbing": 12.0,
    "street condition": 3.0,
    "water system": 1.4,
}


def raw_bucket() -> str:
    return os.environ.get("RAW_BUCKET", "sample-311-raw")


def model_bucket() -> str:
    return os.environ.get("MODEL_BUCKET", "sample-311-models")


def s3() -> Any:
    import boto3

    return boto3.client("s3")


def generate_complaints(day: dt.date, count: int = 500) -> list[dict[str, str]]:
    """A day of complaints, the same for the same day (seeded by it)."""
    rng = random.Random(day.toordinal())
    complaints = []
    for _ in range(count):
        kind = rng.choice(sorted(COMPLAINT_TYPES))
        created = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=rng.randrange(86_400))
        closed = created + dt.timedelta(days=rng.expovariate(1 / COMPLAINT_TYPES[kind]))
        complaints.append(
            {"complaint_type": kind, "created_date": created.isoformat(), "closed_date": closed.isoformat()}
        )
    return complaints


def collect(today: dt.date) -> dict[str, Any]:
    """Put yesterday's complaints into the raw bucket as ``raw/YYYY-MM-DD.json``."""
    yesterday = today - dt.timedelta(days=1)
    complaints = generate_complaints(yesterday)
    key = f"{RAW_PREFIX}{yesterday:%Y-%m-%d}.json"
    s3().put_object(Bucket=raw_bucket(), Key=key, Body=json.dumps(complaints).encode())
    return {"bucket": raw_bucket(), "key": key, "count": len(complaints)}


def medians_of(complaints: list[dict[str, str]]) -> dict[str, float]:
    """Median days to close per complaint type, in plain Python."""
    durations: dict[str, list[float]] = {}
    for complaint in complaints:
        created = dt.datetime.fromisoformat(complaint["created_date"])
        closed = dt.datetime.fromisoformat(complaint["closed_date"])
        durations.setdefault(complaint["complaint_type"].lower(), []).append(
            (closed - created).total_seconds() / 86_400
        )
    return {kind: round(statistics.median(values), 2) for kind, values in sorted(durations.items())}


def compute_medians(bucket: str, key: str) -> dict[str, Any]:
    """Read a raw file and write the model the 311 endpoint serves."""
    complaints = json.loads(s3().get_object(Bucket=bucket, Key=key)["Body"].read())
    medians = medians_of(complaints)
    s3().put_object(Bucket=model_bucket(), Key=MODEL_KEY, Body=json.dumps(medians).encode())
    return {"bucket": model_bucket(), "key": MODEL_KEY, "types": len(medians), "source": key}
