"""The local AWS a project declares: buckets created on moto at start and after each reset, with their seed
files, so that a handler writing to a bucket needs no set-up by hand; seeds fire no trigger."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from .conftest import Client

pytestmark = pytest.mark.integration

APP = """
import boto3
from chalice import Chalice
from lambdapool import Service
from lambdapool.chalice import mount

app = Chalice(app_name="buckets")
svc = Service("svc")


@svc.function()
def write(key: str):
    boto3.client("s3").put_object(Bucket="outputs", Key=key, Body=b"written")
    return key


@svc.function()
def read(bucket: str, key: str):
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


@svc.on_s3_event("inbox")
def arrived(event):
    return event.key


mount(app, svc)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "buckets"
    (directory / "config" / "seed" / "nested").mkdir(parents=True)
    (directory / "app.py").write_text(textwrap.dedent(APP))
    (directory / "config" / "seed" / "nested" / "model.json").write_text('{"seeded": true}')
    (directory / "config" / "buckets.json").write_text(
        json.dumps({"buckets": ["outputs", {"name": "inbox", "seed": "config/seed"}]})
    )
    return directory


def test_declared_buckets_exist_with_their_seeds_and_seeds_fire_no_trigger(
    project: Path, start_emulator: Callable[..., Client]
) -> None:
    emulator = start_emulator(project, aws="moto")

    assert emulator.run("svc", "write", {"key": "k"}).json()["response"] == "k"  # no bucket made by hand
    seeded = emulator.run("svc", "read", {"bucket": "inbox", "key": "nested/model.json"}).json()["response"]
    assert json.loads(seeded) == {"seeded": True}
    assert emulator.endpoint_status("svc", "arrived")["counters"]["eventsDelivered"] == 0


def test_a_reset_empties_the_buckets_back_to_their_seeds(project: Path, start_emulator: Callable[..., Client]) -> None:
    emulator = start_emulator(project, aws="moto")
    assert emulator.run("svc", "write", {"key": "left-behind"}).status_code == 200

    emulator.emulator.reset()

    gone = emulator.run("svc", "read", {"bucket": "outputs", "key": "left-behind"})
    assert gone.status_code == 500 and gone.json()["errorType"] == "NoSuchKey"
    assert emulator.run("svc", "read", {"bucket": "inbox", "key": "nested/model.json"}).status_code == 200
    s3_url = requests.get(f"{emulator.url}/__lambdapool__/aws", timeout=10).json()["endpointUrl"]
    assert s3_url is not None


def test_a_malformed_buckets_file_is_a_clear_error(project: Path) -> None:
    from lambdapool.emulator.project._project import load_buckets

    (project / "config" / "buckets.json").write_text('{"buckets": [{"seed": "config/seed"}]}')

    with pytest.raises(ValueError, match="every bucket needs a name"):
        load_buckets(project)
