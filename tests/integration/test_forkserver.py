"""The fork server seen from outside: it hears of a pipeline's end, and of nothing else."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from lambdapool.emulator.pipelines._config import PipelineConfig, PipelineMode
from lambdapool.emulator.pipelines._forkserver import ForkServer
from lambdapool.emulator.pipelines._wire import recv_frame
from lambdapool.emulator.project._project import BASE_PRELOAD

from .conftest import wait_until

pytestmark = pytest.mark.integration

APP = """\
from chalice import Chalice
from lambdapool import Service
from lambdapool.chalice import mount

app = Chalice(app_name="t")
svc = Service("s")


@svc.function()
def noop():
    return None


mount(app, svc)
"""


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wakeups(pid: int) -> int:
    """How many times the process has gone to sleep and been woken (its voluntary context switches)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


def test_freezing_and_thawing_a_pipeline_does_not_wake_the_fork_server_but_its_end_is_reported(
    tmp_path: Path,
) -> None:
    """The emulator stops and continues an idle pipeline around every call: the fork server, its parent, must
    not be woken by a SIGCHLD each time (it asks for SA_NOCLDSTOP), yet still report the pipeline's end."""
    (tmp_path / "app.py").write_text(APP)
    ended: dict[int, int] = {}
    reported = threading.Event()

    def on_exit(pid: int, status: int) -> None:
        ended[pid] = status
        reported.set()

    with ForkServer(preload=BASE_PRELOAD, on_exit=on_exit) as server:
        pid, sock = server.spawn(PipelineConfig(PipelineMode.SERVE, str(tmp_path), "s", "noop", "t"))
        with sock:
            assert recv_frame(sock)[0]["op"] == "ready"
            assert server.pid is not None
            before = wakeups(server.pid)
            for _ in range(20):
                os.kill(pid, signal.SIGSTOP)
                wait_until(lambda: state(pid) == "T")
                os.kill(pid, signal.SIGCONT)
                wait_until(lambda: state(pid) != "T")
            assert wakeups(server.pid) - before < 5  # 40 stop and continue notifications would be 40 wake-ups
            os.kill(pid, signal.SIGKILL)
            assert reported.wait(30)
    assert os.WIFSIGNALED(ended[pid]) and os.WTERMSIG(ended[pid]) == signal.SIGKILL
