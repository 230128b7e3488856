"""DESIGN 3.1, Init: a cold start costs what Lambda's Init costs, library imports included, although the
fork server imports the app's libraries once and forks pipelines that have them already.

The app imports ``heavy_library`` (outside the project, as an installed library is), whose import takes
1.5 s: the fork server measures that in its own fresh interpreter, and each cold start waits it again,
unless ``fast_cold_starts``."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import requests

from lambdapool.emulator import Emulator

pytestmark = pytest.mark.integration

APPS = Path(__file__).parent / "apps"
HEAVY_IMPORT_MS = 1500


@pytest.fixture
def start(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Emulator]]:
    # heavy_library is found on the path, as an installed library: by the emulator, its fork server and pipelines
    monkeypatch.syspath_prepend(str(APPS / "libraries"))
    monkeypatch.setenv("PYTHONPATH", str(APPS / "libraries"))
    started: list[Emulator] = []

    def start(**options: object) -> Emulator:
        emulator = Emulator(APPS / "cold", port=0, state_dir=tmp_path_factory.mktemp("state"), aws="none", **options)
        started.append(emulator)
        emulator.start()
        emulator.serve_in_thread()
        return emulator

    yield start
    for emulator in started:
        emulator.close()


def _run(emulator: Emulator) -> dict:
    answer = requests.post(f"http://127.0.0.1:{emulator.port}/public/api/v1/cold/ping/run", json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_cold_start_costs_the_library_imports_a_fresh_interpreter_pays(start) -> None:
    emulator = start()
    cold_starts = emulator.status()["coldStarts"]
    assert cold_starts["freshStartMs"] >= HEAVY_IMPORT_MS and not cold_starts["fast"]
    assert cold_starts["addedMs"] == round(cold_starts["freshStartMs"])
    first, second = _run(emulator), _run(emulator)
    assert first["apiContext"]["coldStart"] and first["timing"]["coldStart"] >= HEAVY_IMPORT_MS
    assert not second["apiContext"]["coldStart"] and second["timing"]["coldStart"] == 0


def test_fast_cold_starts_skip_the_wait_but_still_measure_it(start) -> None:
    emulator = start(fast_cold_starts=True)
    cold_starts = emulator.status()["coldStarts"]
    assert cold_starts["freshStartMs"] >= HEAVY_IMPORT_MS and cold_starts["fast"] and cold_starts["addedMs"] == 0
    first = _run(emulator)
    # The pipeline was forked with heavy_library imported: its init did not pay the 1.5 s again.
    assert first["apiContext"]["coldStart"] and first["timing"]["coldStart"] < HEAVY_IMPORT_MS


def test_the_provider_delay_adds_to_the_import_cost_and_init_duration_says_so(start) -> None:
    emulator = start(cold_start_delay_ms=200)
    cold_starts = emulator.status()["coldStarts"]
    assert cold_starts["addedMs"] == round(cold_starts["freshStartMs"]) + 200
    # The Invoke API's Init Duration (what the deployed run route reads, as from Lambda) says the same.
    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{emulator.port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    answer = client.invoke(FunctionName="cold-ping", Payload=b"{}", LogType="Tail")
    init = re.search(r"Init Duration: ([0-9.]+) ms", base64.b64decode(answer["LogResult"]).decode())
    assert init and float(init.group(1)) >= HEAVY_IMPORT_MS + 200
