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


_S3_CLIENT: Any = None


def s3() -> Any:
    """One S3 client per process (creating one costs tens of milliseconds)."""
    global _S3_CLIENT
    if _S3_CLIENT is None:
        import boto3
        from botocore.config import Config

        _S3_CLIENT = boto3.client("s3", config=Config(connect_timeout=2, retries={"total_max_attempts": 2}))
    return _S3_CLIENT


def aws_available() -> bool:
    """On Lambda, or in the emulator (which exports its local AWS); not under ``chalice local``."""
    return bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_EXECUTION_ENV"))


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
    try:
        s3().head_bucket(Bucket=model_bucket())
    except Exception:  # a sample's convenience; a real deployment creates it with its infrastructure
        s3().create_bucket(Bucket=model_bucket())
    s3().put_object(Bucket=model_bucket(), Key=MODEL_KEY, Body=json.dumps(medians).encode())
    return {"bucket": model_bucket(), "key": MODEL_KEY, "types": len(medians), "source": key}


_MODEL_CACHE: dict[str, Any] = {"etag": None, "medians": None}


def load_medians(shipped: dict[str, float]) -> dict[str, float]:
    """The latest model from the model bucket (fetched again only when its ETag changes), else ``shipped``."""
    if not aws_available():
        return shipped
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        etag = s3().head_object(Bucket=model_bucket(), Key=MODEL_KEY)["ETag"]
        if etag != _MODEL_CACHE["etag"]:
            body = s3().get_object(Bucket=model_bucket(), Key=MODEL_KEY)["Body"].read()
            _MODEL_CACHE.update(etag=etag, medians=json.loads(body))
    except (BotoCoreError, ClientError):
        return _MODEL_CACHE["medians"] or shipped
    medians: dict[str, float] = _MODEL_CACHE["medians"]
    return medians
