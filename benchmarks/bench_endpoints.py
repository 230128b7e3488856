"""Side by side: the same `add` function through a bare Werkzeug threaded server, `chalice local` and the
lambdapool emulator, at 1 and 8 concurrent clients; plus the emulator's cold start and idle pipeline memory.

    python benchmarks/bench_endpoints.py [--seconds 5]

Each server runs in its own process; ``wrk`` (a C client, installed if missing) loads it with 1, 8 and 64
connections, kept alive or closed after each request (``Connection: close``, as curl and the Dataiku client
do). Not run by CI: the figures depend on the machine. Prints a table with the ratios the targets are
stated in.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import Load, ensure_wrk, run_wrk

HERE = Path(__file__).resolve().parent
APP = HERE / "app"
PATH = "/public/api/v1/bench/add/run"
BODY = json.dumps({"x": 1, "y": 2}).encode()

BARE_SERVER = textwrap.dedent(
    """
    import json, sys
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    def add(x, y):
        return x + y

    @Request.application
    def app(request):
        args = json.loads(request.get_data() or b"{}")
        return Response(json.dumps({"response": add(**args)}), content_type="application/json")

    make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", PATH, body=BODY, headers={"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} never answered")


def load(port: int, concurrency: int, seconds: float, close: bool) -> Load:
    return run_wrk(f"http://127.0.0.1:{port}{PATH}", concurrency, seconds, BODY, close=close)


def start_server(kind: str, port: int) -> subprocess.Popen[bytes]:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if kind == "werkzeug":
        return subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)], **quiet)
    if kind == "chalice local":
        chalice = shutil.which("chalice") or str(Path(sys.executable).parent / "chalice")
        return subprocess.Popen([chalice, "local", "--port", str(port)], cwd=APP, **quiet)
    return subprocess.Popen([sys.executable, "-m", "lambdapool.cli", "local", str(APP), "--port", str(port)], **quiet)


CONCURRENCIES = (1, 8, 64)
MODES = ("keep-alive", "close")


def bench_servers(seconds: float, rounds: int, kinds: tuple[str, ...]) -> dict[tuple[str, int, str], Load]:
    """The servers run side by side; each round loads each in turn, so that a slow moment of the machine
    hits all of them alike. Reports, per server, concurrency and connection mode, the median round."""
    ports = {kind: free_port() for kind in kinds}
    servers = {kind: start_server(kind, ports[kind]) for kind in kinds}
    samples: dict[tuple[str, int, str], list[Load]] = {}
    try:
        for kind in kinds:
            wait_ready(ports[kind])
            load(ports[kind], 8, 1, close=False)  # warm-up
        for _ in range(rounds):
            for concurrency in CONCURRENCIES:
                for mode in MODES:
                    for kind in kinds:
                        run = load(ports[kind], concurrency, seconds, close=mode == "close")
                        samples.setdefault((kind, concurrency, mode), []).append(run)
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    return {key: sorted(runs, key=lambda run: run.rps)[len(runs) // 2] for key, runs in samples.items()}


def uss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        return sum(
            int(line.split()[1]) * 1024 for line in rollup if line.startswith(("Private_Clean", "Private_Dirty"))
        )


def bench_cold_start(samples: int) -> dict[str, float]:
    """New pipeline to first result, through the emulator's own fork server, on a trivial app."""
    from lambdapool.emulator.pipelines._config import PipelineConfig, PipelineMode
    from lambdapool.emulator.pipelines._forkserver import ForkServer
    from lambdapool.emulator.pipelines._wire import recv_frame, send_frame
    from lambdapool.emulator.project._project import BASE_PRELOAD

    with tempfile.TemporaryDirectory() as project:
        Path(project, "app.py").write_text(
            "from chalice import Chalice\nfrom lambdapool import Service\nfrom lambdapool.chalice import mount\n"
            "app = Chalice(app_name='t')\nsvc = Service('s')\n@svc.function()\ndef noop():\n    return None\n"
            "mount(app, svc)\n"
        )
        config = PipelineConfig(PipelineMode.SERVE, project, "s", "noop", "b")
        times, memory = [], []
        with ForkServer(preload=BASE_PRELOAD) as server:
            for _ in range(samples):
                started = time.perf_counter()
                pid, sock = server.spawn(config)
                assert recv_frame(sock)[0]["op"] == "ready"
                send_frame(sock, {"op": "call", "requestId": "r", "timeoutS": 10, "cold": True}, b"{}")
                assert recv_frame(sock)[0]["op"] == "result"
                times.append((time.perf_counter() - started) * 1000)
                memory.append(uss_bytes(pid))
                sock.close()
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "uss_mb": statistics.median(memory) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per server and concurrency")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median round is shown")
    parser.add_argument("--cold-samples", type=int, default=100)
    parser.add_argument("--no-chalice", action="store_true", help="leave out chalice local (the slowest)")
    args = parser.parse_args()
    ensure_wrk()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, wrk, {args.seconds:g} s per run, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    kinds = ("werkzeug", "lambdapool") if args.no_chalice else ("werkzeug", "chalice local", "lambdapool")
    results = bench_servers(args.seconds, args.rounds, kinds)
    print(f"{'server':<15}{'clients':>8}{'connection':>12}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for (kind, concurrency, mode), figures in sorted(results.items(), key=lambda item: (item[0][2], item[0][1])):
        print(
            f"{kind:<15}{concurrency:>8}{mode:>12}{figures.rps:>10.0f}{figures.p50_ms:>9.2f}"
            f"{figures.p99_ms:>9.2f}{figures.errors:>8d}"
        )
    print()
    for mode in MODES:
        for concurrency in CONCURRENCIES:
            ours = results[("lambdapool", concurrency, mode)]
            bare = results[("werkzeug", concurrency, mode)]
            line = (
                f"{mode:>10}, {concurrency:>2} client(s): lambdapool / werkzeug = {ours.rps / bare.rps:.2f}x req/s, "
                f"p99 {ours.p99_ms / bare.p99_ms:.2f}x"
            )
            if "chalice local" in kinds:
                chalice = results[("chalice local", concurrency, mode)]
                line += f", lambdapool / chalice local = {ours.rps / chalice.rps:.1f}x"
            print(line)
    cold = bench_cold_start(args.cold_samples)
    print(
        f"\ncold start (new pipeline to first result, trivial app, {args.cold_samples} samples): "
        f"p50 {cold['p50_ms']:.2f} ms, p99 {cold['p99_ms']:.2f} ms"
    )
    print(f"idle pipeline memory: {cold['uss_mb']:.2f} MB USS (median)")


if __name__ == "__main__":
    main()
