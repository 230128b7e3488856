"""The 311 service end to end in the emulator, and its data code against moto."""

import json

import boto3
from chalicelib import data


def test_the_data_cycle_updates_the_estimates(lambdapool):
    before = lambdapool.run("311", "predict", complaint_type="plumbing").response["estimated_time"]
    collected = lambdapool.fire("311", "collector").response
    assert collected["count"] == 500 and collected["key"].startswith("raw/")

    # The upload fires the S3-triggered medians job; once it has run, predict serves its model.
    lambdapool.wait_for(lambda: lambdapool.stats("311", "medians")["counters"]["eventsDelivered"] == 1)
    raw = json.loads(lambdapool.s3.get_object(Bucket=collected["bucket"], Key=collected["key"])["Body"].read())
    expected = data.medians_of(raw)
    after = lambdapool.run("311", "predict", complaint_type="plumbing").response["estimated_time"]
    assert after == expected["plumbing"] != before


def test_predict_rejects_an_unknown_complaint_type(lambdapool):
    answer = lambdapool.run("311", "predict", complaint_type="dragons")
    assert (answer.status, answer.error_type) == (400, "BadRequest")


def test_compute_medians_writes_the_model(lambdapool_moto, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")  # moto intercepts boto3; nothing to point at
    monkeypatch.setattr(data, "_S3_CLIENT", None)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sample-311-raw")
    complaints = [
        {"complaint_type": "Plumbing", "created_date": "2026-01-01T00:00:00", "closed_date": "2026-01-03T00:00:00"},
        {"complaint_type": "plumbing", "created_date": "2026-01-01T00:00:00", "closed_date": "2026-01-05T00:00:00"},
        {"complaint_type": "appliance", "created_date": "2026-01-01T00:00:00", "closed_date": "2026-01-01T12:00:00"},
    ]
    s3.put_object(Bucket="sample-311-raw", Key="raw/2026-01-01.json", Body=json.dumps(complaints))
    result = data.compute_medians("sample-311-raw", "raw/2026-01-01.json")
    assert result == {"bucket": "sample-311-models", "key": "model.json", "types": 2, "source": "raw/2026-01-01.json"}
    model = json.loads(s3.get_object(Bucket="sample-311-models", Key="model.json")["Body"].read())
    assert model == {"appliance": 0.5, "plumbing": 3.0}
