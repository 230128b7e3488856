"""Fixtures for integration tests: a real emulator on a free loopback port, real pipelines, real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool.emulator import Emulator
from lambdapool.testing import EmulatorClient

APPS = Path(__file__).parent / "apps"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = ROOT / "sample_app"


def wait_until(predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (the plugin's helper); fail at the deadline."""
    return EmulatorClient.wait_for(predicate, timeout=timeout_s, interval=0.01)


class Client:
    """A small HTTP client for one running emulator."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator
        self.url = emulator.url
        self.session = requests.Session()

    def run(self, service: str, endpoint: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None and "data" not in kwargs:
            kwargs["json"] = body
        return requests.post(f"{self.url}/public/api/v1/{service}/{endpoint}/run", timeout=60, **kwargs)

    def submit(self, service: str, endpoint: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.post(
            f"{self.url}/public/api/v1/{service}/{endpoint}/submit", json=body or {}, timeout=60, **kwargs
        )

    def task(self, task_id: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}/public/api/v1/tasks/{task_id}", timeout=60, **kwargs)

    def wait_for_task(self, task_id: str, *statuses: str) -> dict[str, Any]:
        return wait_until(lambda: (task := self.task(task_id).json()).get("status") in statuses and task)

    def status(self) -> dict[str, Any]:
        return self.session.get(f"{self.url}/__lambdapool__/status", timeout=10).json()

    def endpoint_status(self, service: str, endpoint: str) -> dict[str, Any]:
        return self.status()["services"][service]["endpoints"][endpoint]

    def wait_for_pool(self, service: str, endpoint: str, **expected: int) -> dict[str, Any]:
        """Wait until the endpoint's pipelines (``idle=1``...) or ``queue`` depth are as expected."""

        def matches() -> dict[str, Any] | None:
            status = self.endpoint_status(service, endpoint)
            observed = {**status["pipelines"], "queue": status["queue"]["depth"]}
            return status if all(observed[key] == value for key, value in expected.items()) else None

        return wait_until(matches)


@pytest.fixture
def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Client]]:
    """Start an emulator for a project dir (``port=0``, state in a temporary directory) and serve it;
    everything is stopped afterwards."""
    started: list[Emulator] = []

    def start(project_dir: Path | str = APPS / "behaviours", **options: Any) -> Client:
        options.setdefault("state_dir", tmp_path_factory.mktemp("state"))
        options.setdefault("aws", "none")  # tests that need the local AWS ask for aws="moto"
        options.setdefault("async_retry_delay_s", 0.05)  # Lambda's minutes of retry delays, scaled down
        options.setdefault("fast_cold_starts", True)  # the cold-start conformance tests turn it off
        emulator = Emulator(project_dir, port=0, **options)
        emulator.start()
        started.append(emulator)
        emulator.serve_in_thread()
        return Client(emulator)

    yield start
    for emulator in started:
        emulator.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a process in a process group of its own (``subprocess.Popen`` arguments); at teardown, whatever
    the test did, a process still running is asked to stop (SIGTERM), then the whole group is killed and
    reaped, so that nothing it started outlives the test."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], **options: Any) -> subprocess.Popen[str]:
        process: subprocess.Popen[str] = subprocess.Popen(args, start_new_session=True, text=True, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:  # still running: a clean stop first, so that it removes what it made
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader: kill it even if it ended
        except ProcessLookupError:
            pass
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def behaviours(start_emulator: Callable[..., Client]) -> Client:
    return start_emulator(APPS / "behaviours")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has already ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already ended
    except OSError:  # gone, or reaped while we looked
        return False


def read_banner(process: subprocess.Popen[str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Read ``lambdapool local``'s banner; returns the process, its URL and the banner."""
    banner: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        banner.append(line.rstrip())
        if line.startswith("Press Ctrl-C"):
            break
    match = next((re.search(r"Serving on (http://\S+)", line) for line in banner if "Serving on" in line), None)
    assert match, banner
    return process, match.group(1), banner


@pytest.fixture
def start_cli(spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path) -> Callable[..., tuple]:
    """Start ``lambdapool local PROJECT --port 0`` (state outside the project); returns the process, its URL
    and its banner. The process group is killed at teardown."""

    def start(project: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
        state_dir = str(tmp_path / "state")
        process = spawn(
            [
                sys.executable,
                "-m",
                "lambdapool.cli",
                "local",
                str(project),
                "--port",
                "0",
                "--state-dir",
                state_dir,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return read_banner(process)

    return start


def received(log: Path) -> list[tuple[str, str]]:
    """The (endpoint, key) of every S3 event the triggers app logged, sorted."""
    if not log.exists():
        return []
    return sorted((line["endpoint"], line["key"]) for line in map(json.loads, log.read_text().splitlines()))


def delivered(emulator: Client, endpoint: str) -> int:
    """How many events the triggers app's endpoint handled."""
    return emulator.endpoint_status("t", endpoint)["counters"]["eventsDelivered"]
