"""How the emulator's costs grow with an app: start-up time and idle memory for 1, 10 and 100 endpoints,
req/s with ceil 1, 8 and 64, and 1,000 queued calls on one endpoint drained in FIFO order, none lost.

    python benchmarks/bench_scaling.py [--seconds 5]

- Start-up: ``lambdapool local`` on a generated app of N endpoints, each ``Pool(floor=1)``, from the
  command to every floor pipeline idle (read from ``/__lambdapool__/status``).
- Memory: PSS of the emulator and all its children (``/proc/<pid>/smaps_rollup``) once idle, the USS (private
  memory) of each pipeline, and what an added idle pipeline costs the whole tree: the PSS of one endpoint
  with floor 17 against floor 1, divided by the 16 added pipelines.
- Throughput: ``wrk`` with 64 kept-alive connections on one ``add`` whose pool has ceil (= floor) 1, 8, 64.
- FIFO: 1,000 tasks submitted to an endpoint with ceil 1; each appends its number to a file: the file
  must list 0..999 in order.

Not run by CI: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import ensure_wrk, run_wrk

#: The floor of the second app of the "per added idle pipeline" row (the first has floor 1).
ADDED_FLOOR = 17


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(port: int, path: str) -> object:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def post_json(port: int, path: str, body: object) -> object:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def write_app(root: Path, endpoints: int, pool: str, body: str = "return x + y") -> Path:
    project = root / f"app-{endpoints}-{abs(hash(pool)) % 10_000}"
    project.mkdir()
    functions = "\n".join(
        f"@svc.function(pool={pool})\ndef f{index}(x: float = 0, y: float = 0):\n    {body}\n"
        for index in range(endpoints)
    )
    (project / "app.py").write_text(
        "from chalice import Chalice\nfrom lambdapool import Pool, Service\nfrom lambdapool.chalice import mount\n"
        f"app = Chalice(app_name='scale')\nsvc = Service('s')\n\n{functions}\nmount(app, svc)\n"
    )
    return project


class Local:
    """``lambdapool local`` on a project, stopped (with its group) on exit."""

    def __init__(self, project: Path, *extra: str):
        self.port = free_port()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lambdapool.cli",
                "local",
                str(project),
                "--port",
                str(self.port),
                "--aws",
                "none",
                "--no-reload",
                "--state-dir",
                str(project / ".state"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_idle(self, pipelines: int, timeout_s: float = 300) -> float:
        """Seconds from the start to ``pipelines`` idle pipelines."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status = get_json(self.port, "/__lambdapool__/status")
                idle = sum(
                    endpoint["pipelines"]["idle"]
                    for service in status["services"].values()  # type: ignore[index]
                    for endpoint in service["endpoints"].values()
                )
                if idle >= pipelines:
                    return time.perf_counter() - self.started
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise SystemExit(f"{pipelines} pipelines were not idle after {timeout_s} s")

    def tree(self) -> list[int]:
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
        return found

    def memory(self) -> tuple[float, list[float]]:
        """PSS of the whole tree (MB) and the USS of each pipeline (MB)."""
        pss, uss = 0.0, []
        for pid in self.tree():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]}
            pss += fields.get("Pss", 0) / 1024
            if command.startswith(b"lambdapool: s/"):
                uss.append((fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024)
        return pss, uss

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch:
        root = Path(scratch)
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
        print(f"{'endpoints':>10}{'start-up s':>12}{'PSS MB (all)':>14}{'USS MB/pipeline':>17}")
        sizes: dict[int, float] = {}
        for endpoints in (1, 10, 100):
            project = write_app(root, endpoints, "Pool(floor=1, ceil=1, cruise=1)")
            with Local(project) as local:
                took = local.wait_idle(endpoints)
                time.sleep(1)  # settled: no start in flight
                pss, uss = local.memory()
            sizes[endpoints] = pss
            mean_uss = sum(uss) / len(uss) if uss else float("nan")
            print(f"{endpoints:>10}{took:>12.2f}{pss:>14.1f}{mean_uss:>17.2f}")
        print(f"PSS per added idle pipeline (10 -> 100 endpoints): {(sizes[100] - sizes[10]) / 90:.2f} MB")
        # The same endpoint with more idle pipelines: what one more costs the whole tree, emulator included.
        floors: dict[int, tuple[float, list[float]]] = {}
        for floor in (1, ADDED_FLOOR):
            project = write_app(root, 1, f"Pool(ceil={floor}, floor={floor}, cruise={floor})")
            with Local(project) as local:
                local.wait_idle(floor)
                time.sleep(1)
                floors[floor] = local.memory()
        (small, _), (large, uss) = floors[1], floors[ADDED_FLOOR]
        added = (large - small) / (ADDED_FLOOR - 1)
        print(
            f"1 endpoint, floor 1 -> {ADDED_FLOOR}: PSS per added idle pipeline {added:.2f} MB,"
            f" USS {sum(uss) / len(uss):.2f} MB each (max {max(uss):.2f})\n"
        )

        print(f"{'ceil':>6}{'req/s (64 conns)':>18}{'p99 ms':>9}")
        for ceil in (1, 8, 64):
            project = write_app(root, 1, f"Pool(floor={ceil}, cruise={ceil}, ceil={ceil}, queue=1024)")
            with Local(project) as local:
                local.wait_idle(ceil)
                url = f"http://127.0.0.1:{local.port}/public/api/v1/s/f0/run"
                run_wrk(url, 64, 1, b'{"x": 1, "y": 2}')  # warm-up
                load = run_wrk(url, 64, args.seconds, b'{"x": 1, "y": 2}')
            print(f"{ceil:>6}{load.rps:>18,.0f}{load.p99_ms:>9.2f}  ({load.errors} errors)")

        log = root / "fifo.log"
        body = (
            textwrap.dedent(
                f"""
            with open({str(log)!r}, "a") as out:
                out.write(f"{{int(x)}}\\n")
            return x"""
            )
            .strip()
            .replace("\n", "\n    ")
        )
        project = write_app(root, 1, "Pool(floor=1, cruise=1, ceil=1, queue=2000, timeout_ms=600000)", body)
        with Local(project) as local:
            local.wait_idle(1)
            started = time.perf_counter()
            ids = [post_json(local.port, "/public/api/v1/s/f0/submit", {"x": n})["taskId"] for n in range(1000)]  # type: ignore[index]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 1000):
                time.sleep(0.05)
            took = time.perf_counter() - started
            order = [int(line) for line in log.read_text().split()] if log.exists() else []
            done = sum(
                get_json(local.port, f"/public/api/v1/tasks/{task_id}")["status"] == "DONE"  # type: ignore[index]
                for task_id in ids
            )
        fifo = order == list(range(1000))
        print(
            f"\n1,000 queued calls, ceil 1: {len(order)} ran, {done} DONE, FIFO order: {fifo}, drained in {took:.1f} s"
        )


if __name__ == "__main__":
    main()
