"""What ``lambdapool local`` shows on its console: a line per call, the functions' output prefixed by their
pipeline and never mixed mid-line, the tracebacks of failures (calls and pipelines that fail to start), a
stop message, and pipelines named in ``ps``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .conftest import APPS, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def console(spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path) -> Callable[..., tuple]:
    """Start ``lambdapool local PROJECT`` with its console (stdout and stderr) going to a file, as a terminal
    would take it: a pipe nobody reads would hold the pipelines up. Returns the process, its URL and the
    file."""

    def start(project: Path) -> tuple[subprocess.Popen[str], str, Path]:
        log = tmp_path / f"console-{project.name}.txt"
        with log.open("w") as output:
            process = spawn(
                [
                    sys.executable,
                    "-m",
                    "lambdapool.cli",
                    "local",
                    str(project),
                    "--port",
                    "0",
                    "--aws",
                    "none",
                    "--fast-cold-starts",
                    "--no-reload",
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        banner = wait_until(lambda: "Press Ctrl-C" in (text := log.read_text()) and text)
        match = re.search(r"Serving on (http://\S+)", banner)
        assert match, banner
        return process, match.group(1), log

    return start


def stop(started: tuple[subprocess.Popen[str], str, Path]) -> list[str]:
    """Stop the emulator as Ctrl-C does; its whole console."""
    process, _, log = started
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    return log.read_text().splitlines()


def run(url: str, endpoint: str, body: dict[str, object]) -> requests.Response:
    return requests.post(f"{url}/public/api/v1/b/{endpoint}/run", json=body, timeout=60)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = parent_of(pid)
    return False


def pipelines_named(prefix: str, emulator_pid: int) -> list[str]:
    """The command lines of the running processes the emulator ``emulator_pid`` started (other emulators may
    run on this machine) that start with ``prefix``."""
    names = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode().strip()
            if text.startswith(prefix) and descends_from(int(cmdline.parent.name), emulator_pid):
                names.append(text)
        except (OSError, ValueError, IndexError):
            continue
    return names


def test_a_call_is_one_line_and_its_output_is_prefixed_by_its_pipeline(console: Callable[..., tuple]) -> None:
    started = console(APPS / "behaviours")
    url = started[1]
    assert run(url, "chatty", {"lines": 2}).status_code == 200
    assert pipelines_named("lambdapool: b/chatty #1", started[0].pid) == ["lambdapool: b/chatty #1"]

    lines = stop(started)

    assert re.search(
        r"POST /public/api/v1/b/chatty/run  \[b/chatty#1\] (cold|warm)  200  \d+\.\d\d ms$", "\n".join(lines), re.M
    )
    printed = [line for line in lines if "line 0 of" in line or "line 1 of" in line]
    assert len(printed) == 2 and all(line.startswith("[b/chatty#1] line ") for line in printed)
    assert any(line.startswith("[b/chatty#1] ") and "to stderr" in line for line in lines)
    assert any(line.startswith("lambdapool: stopping: ending ") for line in lines)
    assert lines[-1] == "lambdapool: stopped"


def test_a_failed_call_shows_its_traceback(console: Callable[..., tuple]) -> None:
    started = console(APPS / "behaviours")
    answer = run(started[1], "chatty", {"fail": True})
    assert answer.status_code == 500

    console_text = "\n".join(stop(started))

    assert re.search(r"POST /public/api/v1/b/chatty/run  KeyError  500  ", console_text)
    assert "Traceback (most recent call last)" in console_text and "KeyError: 'missing'" in console_text


def test_lines_of_pipelines_running_side_by_side_never_mix(console: Callable[..., tuple], tmp_path: Path) -> None:
    project = tmp_path / "noisy"
    project.mkdir()
    (project / "app.py").write_text(
        textwrap.dedent("""
        from chalice import Chalice
        from lambdapool import Pool, Service
        from lambdapool.chalice import mount

        app = Chalice(app_name="noisy")
        svc = Service("b")


        @svc.function(pool=Pool(floor=4, cruise=4, ceil=4, queue=16))
        def noisy(tag: str):
            for number in range(200):
                print(f"{tag}-{number}-" + "x" * 200, end="")
                print("-end")
            return tag
    """)
    )
    started = console(project)
    url = started[1]
    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(lambda tag: run(url, "noisy", {"tag": tag}).json()["response"], "abcd")) == list("abcd")

    lines = [line for line in stop(started) if "-end" in line or "xxxx" in line]

    assert len(lines) == 800
    whole = re.compile(r"^\[b/noisy#[1-4]\] [abcd]-\d+-x{200}-end$")
    assert [line for line in lines if not whole.match(line)] == []


def test_a_pipeline_that_fails_to_start_shows_its_traceback(console: Callable[..., tuple], tmp_path: Path) -> None:
    project = tmp_path / "badinit"
    project.mkdir()
    (project / "app.py").write_text(
        textwrap.dedent("""
        import os
        from chalice import Chalice
        from lambdapool import Service
        from lambdapool.chalice import mount

        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in a pipeline, not while the app is described
            raise RuntimeError("the model file is missing")

        app = Chalice(app_name="badinit")
        svc = Service("b")


        @svc.function()
        def predict():
            return 1


        mount(app, svc)
    """)
    )
    started = console(project)
    answer = run(started[1], "predict", {})
    assert answer.status_code == 502

    console_text = "\n".join(stop(started))

    assert "b/predict: pipeline b-predict-" in console_text and "failed to start" in console_text
    assert "RuntimeError: the model file is missing" in console_text
    assert "Traceback (most recent call last)" in console_text


def test_log_records_go_to_the_console_through_the_runtime_handler_as_on_lambda(
    console: Callable[..., tuple], tmp_path: Path
) -> None:
    """The root logger has the runtime's handler before init code runs, so the app's own ``basicConfig``
    does nothing (as on Lambda); records at INFO and above reach the console, prefixed by the pipeline,
    even when the function has redirected ``sys.stderr`` meanwhile."""
    project = tmp_path / "logs"
    project.mkdir()
    (project / "app.py").write_text(
        textwrap.dedent("""
        import contextlib
        import io
        import logging

        from chalice import Chalice
        from lambdapool import Service
        from lambdapool.chalice import mount

        logging.basicConfig(level=logging.DEBUG, format="IGNORED %(message)s")
        logging.getLogger("init").info("loaded")
        app = Chalice(app_name="logs")
        svc = Service("b")


        @svc.function()
        def speak():
            log = logging.getLogger("mine")
            log.debug("not shown: below INFO")
            with contextlib.redirect_stderr(io.StringIO()) as captured:
                log.warning("careful")
            return {"redirected": captured.getvalue()}


        mount(app, svc)
    """)
    )
    started = console(project)
    answer = run(started[1], "speak", {})
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == {"redirected": ""}

    lines = stop(started)

    assert "[b/speak#1] [init] INFO loaded" in lines
    assert "[b/speak#1] [mine] WARNING careful" in lines
    assert not any("IGNORED" in line or "not shown" in line for line in lines)
