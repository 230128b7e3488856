"""Supervision: the fork server and moto's server are restarted when they die, and die with the emulator."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from lambdapool._errors import ForkServerError
from lambdapool.emulator.pipelines._forkserver import ForkServer
from lambdapool.emulator.pipelines._supervision import RestartBackoff
from lambdapool.emulator.project._project import Project

from .conftest import APPS, Client, alive, delivered, read_banner, received, wait_until

pytestmark = pytest.mark.integration

SUPERVISED = APPS / "supervised"


def _pids(status: dict[str, Any]) -> set[int]:
    """Every process a status names: the fork server, moto's server and every pipeline."""
    pids = {status["forkServer"]["pid"], status["aws"]["pid"]}
    for service in status["services"].values():
        for endpoint in service["endpoints"].values():
            pids.update(process["pid"] for process in endpoint["pipelines"]["processes"])
    return pids - {None}


def _status(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/__lambdapool__/status", timeout=10).json()


def _aws(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/__lambdapool__/aws", timeout=10).json()


def _restarted(read: Callable[[], dict[str, Any]], dead_pid: int, restarts: int = 1) -> Callable[[], Any]:
    """A predicate for :func:`wait_until`: what ``read()`` returns once it names a live replacement of
    ``dead_pid`` (``{"pid", "restarts"}``) restarted ``restarts`` times."""

    def check() -> dict[str, Any] | None:
        process = read()
        alive = process["pid"] not in (None, dead_pid) and process["restarts"] == restarts
        return process if alive else None

    return check


def _floors_idle(url: str) -> dict[str, Any] | None:
    """The supervised app's status once its floor pipelines are all idle (a pipeline that is starting when its
    fork server dies is a failed start, which the pool does not replace: tests kill settled pools)."""
    status = _status(url)
    endpoints = status["services"]["s"]["endpoints"]
    idle = {name: endpoints[name]["pipelines"]["idle"] for name in ("warm", "held")}
    return status if idle == {"warm": 2, "held": 1} else None


def _close_and_expect_no_process_left(emulator: Client, pids: set[int]) -> None:
    emulator.emulator.close()
    assert pids
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10)


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


def test_a_killed_fork_server_is_restarted_and_every_endpoint_answers_again(
    start_emulator: Callable[..., Client], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lambdapool")
    emulator = start_emulator(SUPERVISED)
    emulator.wait_for_pool("s", "warm", idle=2)
    emulator.wait_for_pool("s", "held", idle=1)
    before = emulator.status()
    dead = before["forkServer"]["pid"]
    assert before["forkServer"]["restarts"] == 0 and before["forkServerPid"] == dead
    gate = tmp_path / "gate"
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(emulator.run, "s", "held", {"gate": str(gate)})
        emulator.wait_for_pool("s", "held", busy=1)
        seen = _pids(emulator.status())  # the fork server, the two idle warm pipelines and the busy one
        os.kill(dead, signal.SIGKILL)
        restarted = wait_until(_restarted(lambda: emulator.status()["forkServer"], dead))
        crashed = running.result()
    # The call running when the fork server died lost its pipeline (killed with its server).
    assert crashed.status_code == 502
    assert crashed.json()["errorType"] == "PipelineCrashed" and "SIGKILL" in crashed.json()["message"]
    assert emulator.status()["forkServerPid"] == restarted["pid"]
    wait_until(lambda: not any(alive(pid) for pid in seen))
    gate.touch()
    for endpoint in ("warm", "cold", "held"):  # cold scales to zero: its pipeline starts on the new server
        answer = emulator.run("s", endpoint, {})
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"]["pid"] not in seen
    emulator.wait_for_pool("s", "warm", idle=2)  # the floor is kept
    assert _messages(caplog, "lambdapool.emulator") == [
        f"the fork server (pid {dead}) was killed by SIGKILL; restarted it as pid {restarted['pid']} (restart 1)"
    ]
    _close_and_expect_no_process_left(emulator, seen | _pids(emulator.status()))


def test_a_killed_moto_is_restarted_on_the_same_url_and_s3_triggers_fire_again(
    start_emulator: Callable[..., Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lambdapool")
    events = tmp_path / "events.log"
    monkeypatch.setenv("EVENTS_LOG", str(events))
    monkeypatch.setenv("SCHEDULE_GATE", str(tmp_path / "gate"))
    emulator = start_emulator(APPS / "triggers", aws="moto")
    before = _aws(emulator.url)
    assert before["mode"] == "moto" and before["restarts"] == 0 and alive(before["pid"])

    def s3() -> Any:
        return boto3.client(
            "s3",
            endpoint_url=before["endpointUrl"],
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )

    s3().put_object(Bucket="watched", Key="in/before.csv", Body=b"1")
    wait_until(lambda: delivered(emulator, "csv_in") == 1)
    seen = _pids(emulator.status())
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_until(_restarted(lambda: _aws(emulator.url), before["pid"]))
    assert after["endpointUrl"] == before["endpointUrl"]  # the pipelines' AWS_ENDPOINT_URL still reaches it
    assert emulator.status()["aws"] == after
    # moto keeps everything in memory: the restarted one has the watched buckets and their notifications again.
    s3().put_object(Bucket="watched", Key="in/after.csv", Body=b"2")
    wait_until(lambda: delivered(emulator, "csv_in") == 2 and delivered(emulator, "anything_in") == 2)
    assert received(events) == [
        ("anything_in", "in/after.csv"),
        ("anything_in", "in/before.csv"),
        ("csv_in", "in/after.csv"),
        ("csv_in", "in/before.csv"),
    ]
    # One line says what happened; the pollers waited for the restart without a word.
    assert _messages(caplog, "lambdapool.aws") == [
        f"moto's server (pid {before['pid']}) was killed by SIGKILL; restarted it on {before['endpointUrl']} "
        f"as pid {after['pid']} (restart 1) and wired its S3 triggers again"
    ]
    _close_and_expect_no_process_left(emulator, seen | _pids(emulator.status()))


def test_a_killed_emulator_takes_its_restarted_fork_server_and_moto_with_it(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "lambdapool.cli", "local", str(SUPERVISED), "--port", "0"]
    process = spawn(
        [*command, "--state-dir", str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _, url, _ = read_banner(process)  # with moto's server, the default local AWS
    status = wait_until(lambda: _floors_idle(url))
    seen = _pids(status)
    os.kill(status["forkServer"]["pid"], signal.SIGKILL)
    os.kill(status["aws"]["pid"], signal.SIGKILL)
    wait_until(_restarted(lambda: _status(url)["forkServer"], status["forkServer"]["pid"]))
    wait_until(_restarted(lambda: _aws(url), status["aws"]["pid"]))
    answer = requests.post(f"{url}/public/api/v1/s/warm/run", json={}, timeout=30)
    assert answer.status_code == 200, answer.text
    restarted = _pids(wait_until(lambda: _floors_idle(url)))
    assert len(restarted) == 5 and not restarted & seen  # the fork server, moto's server and 3 pipelines, all new
    assert all(alive(pid) for pid in restarted)
    seen |= restarted
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in seen), timeout_s=10)


def test_a_fork_server_that_keeps_dying_is_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A preloaded module that ends the fork server as soon as the flag exists: every restart then fails.
    (tmp_path / "doom.py").write_text(f"import os\nif os.path.exists({str(tmp_path / 'flag')!r}):\n    os._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    caplog.set_level(logging.WARNING, logger="lambdapool")
    config = Project(SUPERVISED).pipeline_config(None)
    pids: set[int] = set()
    with ForkServer(["doom"], backoff=RestartBackoff(attempts=3, first_s=0.01)) as forkserver:
        dead = forkserver.pid
        assert dead is not None
        pid, sock = forkserver.spawn(config)
        sock.close()
        pids |= {dead, pid}
        (tmp_path / "flag").touch()
        os.kill(dead, signal.SIGKILL)
        with pytest.raises(ForkServerError, match="not running"):
            forkserver.spawn(config)  # waits for the restarts, which all fail
        assert (forkserver.pid, forkserver.restarts) == (None, 0)
    warnings = _messages(caplog, "lambdapool.emulator")
    assert len(warnings) == 4 and all(f"the fork server (pid {dead}) was killed by SIGKILL" in w for w in warnings)
    assert "giving up after 3 restarts in a row" in warnings[-1]
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10)
