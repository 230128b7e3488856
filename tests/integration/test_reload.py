"""Reload on change: edit app.py while the emulator serves, and the new version serves from the moment the
reload is reported, with no call lost; a broken edit leaves the old version serving."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdapool.emulator import Emulator

from .conftest import wait_until

pytestmark = pytest.mark.integration

APP = """
from chalice import Chalice
from lambdapool import Pool, Service
from lambdapool.chalice import mount

app = Chalice(app_name="live")
svc = Service("svc")


@svc.function(pool=Pool(floor=1, cruise=2, ceil=4, queue=64, timeout_ms=30_000))
def version():
    return "{version}"


@svc.function()
def {extra}():
    return "{extra}"


@svc.function(pool=Pool(floor=0, cruise=0, ceil=1, queue=4))
def lazy():
    return "{version}"


@app.route("/")
def index():
    return {{"version": "{version}"}}


mount(app, svc)
"""


def write_app(directory: Path, version: str, extra: str) -> None:
    (directory / "app.py").write_text(textwrap.dedent(APP.format(version=version, extra=extra)))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "live"
    (directory / ".chalice").mkdir(parents=True)
    (directory / ".chalice" / "config.json").write_text('{"version": "2.0", "app_name": "live"}')
    write_app(directory, "v1", "old_one")
    return directory


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(directory: Path, **options: Any) -> Emulator:
        emulator = Emulator(
            directory, port=0, state_dir=tmp_path / "state", aws="none", fast_cold_starts=True, **options
        )
        started.append(emulator)
        emulator.start()
        emulator.serve_in_thread()
        return emulator

    yield start
    for emulator in started:
        emulator.close()


def run(emulator: Emulator, endpoint: str) -> requests.Response:
    return requests.post(f"{emulator.url}/public/api/v1/svc/{endpoint}/run", json={}, timeout=60)


def test_a_reload_serves_the_new_version_adds_and_removes_endpoints(
    project: Path, serve: Callable[..., Emulator]
) -> None:
    emulator = serve(project)
    assert run(emulator, "version").json()["response"] == "v1"
    assert run(emulator, "old_one").status_code == 200

    write_app(project, "v2", "new_one")
    assert emulator.reload(["app.py"]) is True

    assert run(emulator, "version").json()["response"] == "v2"
    assert requests.get(emulator.url + "/", timeout=30).json() == {"version": "v2"}
    assert run(emulator, "new_one").json()["response"] == "new_one"
    removed = run(emulator, "old_one")
    assert (removed.status_code, removed.json()["errorType"]) == (404, "NotFound")
    reload = emulator.status()["reload"]
    assert (reload["generation"], reload["last"]["ok"], reload["last"]["changed"]) == (1, True, ["app.py"])


def test_a_broken_edit_keeps_the_old_version_serving_and_says_why(
    project: Path, serve: Callable[..., Emulator]
) -> None:
    emulator = serve(project)
    (project / "app.py").write_text((project / "app.py").read_text() + "\ndef broken(:\n")

    assert emulator.reload(["app.py"]) is False

    assert run(emulator, "version").json()["response"] == "v1"
    assert run(emulator, "lazy").json()["response"] == "v1"  # a pipeline started now runs the version served
    last = emulator.status()["reload"]["last"]
    assert last["ok"] is False and "SyntaxError" in last["error"]
    assert emulator.status()["reload"]["generation"] == 0


def test_an_edit_during_a_stream_of_calls_loses_none_and_old_code_never_answers_after_the_report(
    project: Path, serve: Callable[..., Emulator]
) -> None:
    emulator = serve(project, reload=True)
    assert emulator._reloader is not None and emulator._reloader.ready.wait(30)
    answers: list[tuple[float, int, Any]] = []  # (when the call was sent, status, response)
    lock = threading.Lock()
    stop = threading.Event()

    def caller() -> None:
        session = requests.Session()
        while not stop.is_set():
            sent = time.monotonic()
            response = session.post(f"{emulator.url}/public/api/v1/svc/version/run", json={}, timeout=60)
            with lock:
                answers.append((sent, response.status_code, response.json().get("response")))

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        wait_until(lambda: len(answers) >= 20)
        write_app(project, "v2", "old_one")
        wait_until(lambda: emulator.status()["reload"]["generation"] == 1)
        reported = time.monotonic()
        wait_until(lambda: sum(1 for sent, _, _ in list(answers) if sent > reported) >= 20)
    finally:
        stop.set()
        for thread in callers:
            thread.join()

    assert {status for _, status, _ in answers} == {200}  # none lost, none failed
    assert {response for sent, _, response in answers if sent > reported} == {"v2"}
    assert "v1" in {response for _, _, response in answers}


def test_a_pool_file_change_reloads_the_pool(project: Path, serve: Callable[..., Emulator]) -> None:
    emulator = serve(project)
    pool_file = project / "config" / "services" / "svc" / "version.json"
    pool_file.parent.mkdir(parents=True)
    pool_file.write_text('{"pool": {"floor": 0, "cruise": 0, "ceil": 3}}')

    assert emulator.reload(["config/services/svc/version.json"]) is True

    pool = emulator.status()["services"]["svc"]["endpoints"]["version"]["pool"]
    assert (pool["floor"], pool["ceil"]) == (0, 3)


def test_only_the_files_that_describe_the_project_are_watched(project: Path) -> None:
    from lambdapool.emulator.project._reload import watched

    root = project.resolve()
    assert watched(root, str(root / "app.py"))
    assert watched(root, str(root / "chalicelib" / "model.py"))
    assert watched(root, str(root / ".chalice" / "config.json"))
    assert watched(root, str(root / "config" / "services" / "svc" / "version.json"))
    assert not watched(root, str(root / ".lambdapool" / "tasks" / "x.json"))  # the emulator's own state
    assert not watched(root, str(root / "chalicelib" / "__pycache__" / "model.cpython-311.pyc"))
    assert not watched(root, str(root / "README.md"))


def test_closing_during_a_reload_ends_the_calls_it_drains_and_starts_nothing_new(
    project: Path, serve: Callable[..., Emulator], tmp_path: Path
) -> None:
    held = textwrap.dedent(f"""
        @svc.function(pool=Pool(floor=1, cruise=1, ceil=1, queue=1), timeout_s=300)
        def held():
            import os, time
            while not os.path.exists({str(tmp_path / "never")!r}):
                time.sleep(0.01)
            return "released"


        mount(app, svc)
    """)
    (project / "app.py").write_text((project / "app.py").read_text().replace("mount(app, svc)", held))
    emulator = serve(project)
    answers: list[int] = []
    caller = threading.Thread(target=lambda: answers.append(run(emulator, "held").status_code))
    caller.start()
    wait_until(lambda: emulator.status()["services"]["svc"]["endpoints"]["held"]["pipelines"]["busy"] == 1)
    reloading = threading.Thread(target=emulator.reload, args=(["app.py"],))
    reloading.start()
    wait_until(lambda: emulator.status()["reload"]["generation"] == 0 and emulator._draining)

    closing = threading.Thread(target=emulator.close)
    closing.start()
    closing.join(60)  # the held call would take 300 s: close must not wait for it

    assert not closing.is_alive()
    reloading.join(60)
    caller.join(60)
    assert answers == [502]  # the call was in flight when the emulator stopped: answered, not dropped
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("lambdapool-")] == []
