"""``lambdapool local`` as users run it: a real process, its banner, and a clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from .conftest import APPS, SAMPLE_APP, alive, wait_until

pytestmark = pytest.mark.integration


def _emulator_pids(url: str) -> list[int]:
    """The fork server's pid and every pipeline's, from the emulator's status."""
    status = requests.get(f"{url}/__lambdapool__/status", timeout=10).json()
    return [status["forkServerPid"]] + [
        process_info["pid"]
        for service in status["services"].values()
        for endpoint in service["endpoints"].values()
        for process_info in endpoint["pipelines"]["processes"]
    ]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_emulator_leaves_no_pipeline_behind(stop_signal: signal.Signals, start_cli) -> None:
    process, url, banner = start_cli(SAMPLE_APP)
    assert any("/public/api/v1/311/predict/run" in line and "ceil=8" in line for line in banner)
    # complaint_types keeps timeout_s=60: its route could never use more than API Gateway's 29 s.
    assert any(line.startswith("warning: 311/complaint_types has timeout_s=60") for line in banner)
    answer = requests.post(f"{url}/public/api/v1/demo/add/run", json={"x": 1, "y": 1}, timeout=30)
    assert answer.json()["response"] == 2
    pids = _emulator_pids(url)
    assert len(pids) >= 5 and all(alive(pid) for pid in pids)
    process.send_signal(stop_signal)
    assert process.wait(timeout=30) == 0
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10)


def _tmp_root_of(emulator_pid: int) -> Path:
    """The directory of an emulator's pipelines' private /tmp directories."""
    (root,) = Path(tempfile.gettempdir()).glob(f"lambdapool-tmp-{emulator_pid}-*")
    return root


def test_a_killed_emulator_takes_its_pipelines_and_its_local_aws_with_it(start_cli) -> None:
    process, url, _ = start_cli(APPS / "behaviours")  # with moto's server, the default local AWS
    pids = _emulator_pids(url)
    tmp_root = _tmp_root_of(process.pid)
    assert any(tmp_root.iterdir())
    moto_pid = requests.get(f"{url}/__lambdapool__/status", timeout=10).json()["aws"]["pid"]
    assert moto_pid is not None and alive(moto_pid)
    pids.append(moto_pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10)
    # The fork server, the last to know of the pipelines, removed their /tmp directories as it ended.
    assert not tmp_root.exists()


def test_the_next_start_removes_what_an_emulator_killed_with_its_fork_server_left(start_cli) -> None:
    """Killed with its fork server, an emulator leaves its pipelines' /tmp behind: the next emulator to start
    removes them, and keeps those of emulators still running."""
    process, url, _ = start_cli(APPS / "behaviours")
    pids = _emulator_pids(url)
    tmp_root = _tmp_root_of(process.pid)
    fork_server = pids[0]
    os.kill(fork_server, signal.SIGSTOP)  # so that it cannot clean up when the emulator dies
    os.kill(process.pid, signal.SIGKILL)
    os.kill(fork_server, signal.SIGKILL)
    process.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout_s=10)
    assert any(tmp_root.iterdir())  # nobody was left to remove them
    live_root = Path(tempfile.gettempdir()) / f"lambdapool-tmp-{os.getpid()}-running"
    (live_root / "kept-1-abcdefgh").mkdir(parents=True)  # this test's process stands for a running emulator
    try:
        _, second_url, _ = start_cli(APPS / "behaviours")
        assert requests.post(f"{second_url}/public/api/v1/b/echo/run", json={}, timeout=30).status_code == 200
        assert not tmp_root.exists()
        assert (live_root / "kept-1-abcdefgh").is_dir()
    finally:
        shutil.rmtree(live_root, ignore_errors=True)


def _failed_start(project: Path) -> str:
    """Run ``lambdapool local`` on a project that cannot start; returns what it printed on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "local", str(project), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot start" in result.stderr
    return result.stderr


def test_an_app_that_fails_to_import_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import no_such_module_here\n")
    assert "No module named 'no_such_module_here'" in _failed_start(tmp_path)


def test_a_missing_app_py_is_a_clear_error(tmp_path: Path) -> None:
    assert "app.py not found" in _failed_start(tmp_path)


def test_the_cold_start_delay_flag_adds_to_every_pipeline_start(start_cli) -> None:
    process, url, _ = start_cli(SAMPLE_APP, "--cold-start-delay-ms", "300")
    try:
        answer = requests.post(f"{url}/public/api/v1/demo/api_py_function/run", json={}, timeout=30).json()
        assert answer["apiContext"]["coldStart"] is True
        assert answer["timing"]["coldStart"] >= 300
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_version_and_the_state_directory_is_git_ignored(start_cli, tmp_path: Path) -> None:
    version = subprocess.run([sys.executable, "-m", "lambdapool.cli", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"lambdapool {__import__('lambdapool').__version__}"

    start_cli(APPS / "behaviours")

    assert (tmp_path / "state" / ".gitignore").read_text().splitlines()[-1] == "*"
