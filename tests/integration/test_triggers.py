"""Schedules and S3 events in the emulator, on its moto-backed local AWS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests

from .conftest import APPS, Client, delivered, received, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def triggers(start_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Client, Path]:
    log = tmp_path / "events.log"
    monkeypatch.setenv("EVENTS_LOG", str(log))
    monkeypatch.setenv("SCHEDULE_GATE", str(tmp_path / "gate"))
    return start_emulator(APPS / "triggers", aws="moto"), log


def s3_client(emulator: Client):
    url = requests.get(f"{emulator.url}/__lambdapool__/aws", timeout=10).json()["endpointUrl"]
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_the_local_aws_is_moto_and_watched_buckets_exist(triggers) -> None:
    emulator, _ = triggers
    aws = requests.get(f"{emulator.url}/__lambdapool__/aws", timeout=10).json()
    assert aws["mode"] == "moto" and aws["endpointUrl"].startswith("http://127.0.0.1:")
    assert {"watched", "fragile"} <= {bucket["Name"] for bucket in s3_client(emulator).list_buckets()["Buckets"]}


def test_s3_filters_apply_as_s3_applies_them(triggers) -> None:
    emulator, log = triggers
    s3 = s3_client(emulator)
    # Outside the prefix, then outside the suffix: csv_in must not fire for either.
    s3.put_object(Bucket="watched", Key="out/b.csv", Body=b"1")
    s3.put_object(Bucket="watched", Key="in/c.txt", Body=b"2")
    s3.put_object(Bucket="watched", Key="in/a.csv", Body=b"3")
    wait_until(lambda: delivered(emulator, "csv_in") == 1 and delivered(emulator, "anything_in") == 2)
    s3.delete_object(Bucket="watched", Key="in/a.csv")  # only 'removed' subscribes to removals
    wait_until(lambda: delivered(emulator, "removed") == 1)
    assert received(log) == [
        ("anything_in", "in/a.csv"),
        ("anything_in", "in/c.txt"),
        ("csv_in", "in/a.csv"),
        ("removed", "in/a.csv"),
    ]
    assert delivered(emulator, "csv_in") == 1 and delivered(emulator, "removed") == 1


def test_keys_with_spaces_and_unicode_arrive_decoded(triggers) -> None:
    emulator, log = triggers
    key = "in/rapport été 2026+final.csv"
    s3_client(emulator).put_object(Bucket="watched", Key=key, Body=b"x")
    wait_until(lambda: delivered(emulator, "csv_in") == 1 and delivered(emulator, "anything_in") == 1)
    assert received(log) == [("anything_in", key), ("csv_in", key)]


def test_a_failing_trigger_is_reported_and_later_events_still_arrive(triggers) -> None:
    emulator, log = triggers
    s3 = s3_client(emulator)
    s3.put_object(Bucket="fragile", Key="boom.json", Body=b"x")
    wait_until(lambda: emulator.endpoint_status("t", "fragile")["counters"]["eventsFailed"] == 1)
    status = emulator.endpoint_status("t", "fragile")
    assert status["lastError"]["errorType"] == "RuntimeError"
    assert "cannot handle boom.json" in status["lastError"]["message"]
    s3.put_object(Bucket="fragile", Key="hang.json", Body=b"x")  # runs past timeout_s=1
    wait_until(lambda: emulator.endpoint_status("t", "fragile")["counters"]["eventsFailed"] == 2)
    assert emulator.endpoint_status("t", "fragile")["lastError"]["errorType"] == "Timeout"
    s3.put_object(Bucket="fragile", Key="fine.json", Body=b"x")
    wait_until(lambda: delivered(emulator, "fragile") == 1)
    assert received(log) == [("fragile", "fine.json")]


def test_fire_runs_a_schedule_now_with_an_eventbridge_event(triggers, tmp_path: Path) -> None:
    emulator, _ = triggers
    (tmp_path / "gate").touch()
    answer = requests.post(f"{emulator.url}/__lambdapool__/schedules/t/nightly/fire", timeout=60)
    assert answer.status_code == 200
    event = answer.json()["response"]
    assert (event["detail_type"], event["source"]) == ("Scheduled Event", "aws.events")
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/triggers-dev-t-nightly-event"]
    assert event["time"].endswith("Z")
    assert delivered(emulator, "nightly") == 1
    for path in ("/__lambdapool__/schedules/t/plain/fire", "/__lambdapool__/schedules/t/csv_in/fire"):
        assert requests.post(f"{emulator.url}{path}", timeout=10).status_code == 404


def test_a_slow_schedule_occupies_its_pipeline_and_a_burst_queues(triggers, tmp_path: Path) -> None:
    emulator, _ = triggers
    fire = f"{emulator.url}/__lambdapool__/schedules/t/nightly/fire"
    emulator.wait_for_pool("t", "nightly", idle=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(requests.post, fire, timeout=60)
        emulator.wait_for_pool("t", "nightly", busy=1)
        second = pool.submit(requests.post, fire, timeout=60)
        emulator.wait_for_pool("t", "nightly", queue=1)  # ceil=1: the second firing waits its turn
        (tmp_path / "gate").touch()
        answers = [first.result(), second.result()]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].json()["response"]["pid"] == answers[1].json()["response"]["pid"]


def test_trigger_endpoints_have_no_run_route(triggers) -> None:
    emulator, _ = triggers
    assert emulator.run("t", "nightly", {}).status_code == 404
    assert emulator.run("t", "plain", {}).json()["response"] == "not a trigger"
