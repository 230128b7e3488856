"""The sample project through the emulator, with real clients (Dataiku's included)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from dataikuapi import APINodeClient
from dataikuapi.utils import DataikuException

from .conftest import SAMPLE_APP, Client

pytestmark = pytest.mark.integration


@pytest.fixture
def sample(start_emulator) -> Client:
    return start_emulator(SAMPLE_APP)


def test_the_311_estimator_answers_with_the_shipped_medians(sample: Client) -> None:
    medians = json.loads((SAMPLE_APP / "models" / "medians.json").read_text())
    answer = sample.run("311", "predict", {"complaint_type": "Appliance", "lat": 40.6, "lon": -73.9})
    assert answer.status_code == 200
    assert answer.json()["response"] == {
        "complaint_type": "appliance",
        "estimated_time": medians["appliance"],
        "lat": 40.6,
        "lon": -73.9,
    }


def test_an_unknown_complaint_type_is_a_bad_request(sample: Client) -> None:
    answer = sample.run("311", "predict", {"complaint_type": "dragons"})
    assert answer.status_code == 400
    assert answer.json()["errorType"] == "BadRequest"
    assert "appliance" in answer.json()["detailedMessage"]


def test_the_dataiku_client_runs_functions_unchanged(sample: Client) -> None:
    client = APINodeClient(sample.url, "demo")
    assert client.run_function("add", x=2, y=40)["response"] == 42
    answer = client.run_function("api_py_function", z=1, a=2, b="c")
    assert answer["response"] == {"z": 1, "data": {"a": 2, "b": "c"}, "keys": ["a", "b"]}
    # No arguments: the client sends no body and no Content-Type at all.
    assert APINodeClient(sample.url, "311").run_function("complaint_types")["response"]["count"] == 9
    with pytest.raises(DataikuException, match="BadRequest"):
        client.run_function("add", x=1)


def test_the_pool_override_file_replaces_the_declared_pool(sample: Client) -> None:
    status = sample.endpoint_status("demo", "api_py_function")
    assert status["pool"] == {"floor": 0, "ceil": 4, "cruise": 1, "queue": 8, "timeout_ms": 5000}
    assert status["pipelines"]["total"] == 0  # floor 0: scaled to zero until called
    answer = sample.run("demo", "api_py_function", {"q": 1})
    assert answer.json()["apiContext"]["coldStart"] is True


def test_the_slow_endpoint_shows_queueing(sample: Client) -> None:
    sample.wait_for_pool("demo", "slow", idle=1)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: sample.run("demo", "slow", {"seconds": 0.5}), range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4
    assert len({answer.json()["response"]["pid"] for answer in answers}) == 2  # ceil=2
