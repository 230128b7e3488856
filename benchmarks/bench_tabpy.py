"""TabPy's own server against lambdapool's TabPy API, same run: ``/query/add`` throughput at 1 and 8 clients
(measured with ``wrk``, whose own CPU cost is negligible), and ``/info`` latency while a deployed function
that takes 3 s runs (TabPy runs deployed functions on its only event loop; lambdapool in pools).

    python benchmarks/bench_tabpy.py [--seconds 5] [--rounds 2]

Needs the ``tabpy`` package (``pip install -e ".[test]"``) and ``wrk`` (``apt-get install wrk``). Both servers
run without credentials (TabPy hashes the password of every request with PBKDF2, which would measure that
instead); lambdapool is started once with ``--allow-deploy --pwd-file`` to deploy, then again without them:
its deployed functions come back from the state directory. Rounds alternate between the servers. Not run
by CI: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE / "app"
USER, PASSWORD = "bench", "bench:pass"


def add(x, y):  # type: ignore[no-untyped-def]
    return x + y


def slow(seconds):  # type: ignore[no-untyped-def]
    import time

    time.sleep(seconds)
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server on port {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/info")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no server on port {port} after {timeout_s} s")


def start(args: list[str], **options: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **options
    )  # type: ignore[call-overload, no-any-return]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def deploy(url: str, auth: tuple[str, str] | None) -> None:
    import cloudpickle
    from tabpy.tabpy_tools.client import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client = Client(url + "/")
    if auth is not None:
        client.set_credentials(*auth)
    client.deploy("add", add, "Adds x and y", override=True)
    client.deploy("slow", slow, "Sleeps", override=True)
    assert client.query("add", 1, 2)["response"] == 3


def wrk(url: str, connections: int, seconds: float, script: Path) -> tuple[float, float, float]:
    """req/s, median and p99 latency (ms) of ``wrk`` POSTing ``{"data": [1, 2]}`` to ``url``."""
    threads = min(connections, 2)
    duration = f"-d{max(1, round(seconds))}s"
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", duration, "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error answers\n{done.stdout}")

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", done.stdout).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rate, latency("50%"), latency("99%")


def info_latency_during_slow_call(port: int) -> list[float]:
    """``/info`` latencies (ms), one after the other, while a call to ``slow(3)`` runs."""
    answered = threading.Event()

    def slow_call() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "POST", "/query/slow", body=json.dumps({"data": [3]}), headers={"Content-Type": "application/json"}
        )
        connection.getresponse().read()
        connection.close()
        answered.set()

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.3)  # let the slow call start (a benchmark, not a test: no event to wait on across servers)
    latencies = []
    while not answered.is_set() and len(latencies) < 5:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/info")
        connection.getresponse().read()
        connection.close()
        latencies.append((time.perf_counter() - started) * 1000)
    thread.join()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_tabpy: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    tabpy = shutil.which("tabpy") or str(Path(sys.executable).with_name("tabpy"))
    if not Path(tabpy).exists():
        print("bench_tabpy: TabPy is not installed (pip install tabpy)", file=sys.stderr)
        return 2
    from tabpy.tabpy_server.handlers.util import hash_password

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tabpy-") as scratch:
        root = Path(scratch)
        script = root / "query.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.body = \'{"data": [1, 2]}\'\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        pwd = root / "passwords.txt"
        pwd.write_text(f"{USER} {hash_password(USER, PASSWORD)}\n")
        try:
            tabpy_port = free_port()
            config = root / "tabpy.conf"
            config.write_text(f"[TabPy]\nTABPY_PORT = {tabpy_port}\nTABPY_STATE_PATH = {root / 'tabpy-state'}\n")
            (root / "tabpy-state").mkdir()  # TabPy writes its state.ini there from its template
            processes.append(start([tabpy, "--config", str(config), "--disable-auth-warning"], cwd=root))
            wait_ready(tabpy_port, processes[-1])
            deploy(f"http://127.0.0.1:{tabpy_port}", None)

            state = root / "lambdapool-state"
            command = [
                sys.executable,
                "-m",
                "lambdapool.cli",
                "local",
                str(APP),
                "--aws",
                "none",
                "--state-dir",
                str(state),
            ]
            port = free_port()
            first = start([*command, "--port", str(port), "--allow-deploy", "--pwd-file", str(pwd)])
            wait_ready(port, first)
            deploy(f"http://127.0.0.1:{port}", (USER, PASSWORD))
            stop(first)
            lambdapool_port = free_port()
            processes.append(start([*command, "--port", str(lambdapool_port)]))  # no credentials: as TabPy runs here
            wait_ready(lambdapool_port, processes[-1])

            servers = {"TabPy 2.x": tabpy_port, "lambdapool": lambdapool_port}
            rates: dict[tuple[str, int], list[float]] = {}
            p99s: dict[tuple[str, int], list[float]] = {}
            for _ in range(options.rounds):
                for connections in (1, 8):
                    for name, server_port in servers.items():
                        rate, _median, p99 = wrk(
                            f"http://127.0.0.1:{server_port}/query/add", connections, options.seconds, script
                        )
                        rates.setdefault((name, connections), []).append(rate)
                        p99s.setdefault((name, connections), []).append(p99)
            info = {name: info_latency_during_slow_call(server_port) for name, server_port in servers.items()}
        finally:
            for process in processes:
                stop(process)

    print(f"/query/add with wrk, {options.rounds} rounds of {options.seconds:g} s (median of rounds), keep-alive")
    print(f"{'server':<12} {'1 client req/s':>15} {'p99 ms':>8} {'8 clients req/s':>16} {'p99 ms':>8}")
    for name in servers:
        cells = []
        for connections in (1, 8):
            cells.append(
                f"{statistics.median(rates[(name, connections)]):>15,.0f}"
                if connections == 1
                else f"{statistics.median(rates[(name, connections)]):>16,.0f}"
            )
            cells.append(f"{statistics.median(p99s[(name, connections)]):>8.2f}")
        print(f"{name:<12} " + " ".join(cells))
    for connections in (1, 8):
        ratio = statistics.median(rates[("lambdapool", connections)]) / statistics.median(
            rates[("TabPy 2.x", connections)]
        )
        print(f"lambdapool / TabPy at {connections} client(s): {ratio:.2f}x")
    print("\n/info latency while a deployed function sleeps 3 s (ms, one request after the other):")
    for name, latencies in info.items():
        print(f"{name:<12} " + ", ".join(f"{value:.1f}" for value in latencies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
