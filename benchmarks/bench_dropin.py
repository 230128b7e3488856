"""What the drop-in experience costs: ``lambdapool local`` from start to its first answer (with its local AWS
on moto, as by default), and the pytest plugin's cost per test with its session emulator.

    python benchmarks/bench_dropin.py [--samples 5] [--tests 100]

Not run by CI: the figures depend on the machine. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_APP = ROOT / "sample_app"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_to_first_answer(state_dir: str, *flags: str) -> float:
    """Seconds from launching ``lambdapool local sample_app`` to its first 200 on demo/add."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambdapool.cli",
            "local",
            str(SAMPLE_APP),
            "--port",
            str(port),
            "--no-reload",
            "--state-dir",
            state_dir,
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    body = json.dumps({"x": 1, "y": 2}).encode()
    try:
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/public/api/v1/demo/add/run", data=body)
                with urllib.request.urlopen(request, timeout=30) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if process.poll() is not None:
                raise RuntimeError("lambdapool local exited")
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)


PLUGIN_TESTS = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_add(lambdapool, n):
    assert lambdapool.run("demo", "add", x=n, y=1).response == n + 1
"""


def plugin_run_s(directory: Path, count: int) -> float:
    """Seconds for a pytest run of ``count`` tests using the ``lambdapool`` fixture on the sample app."""
    (directory / "test_bench.py").write_text(textwrap.dedent(PLUGIN_TESTS.format(count=count)))
    (directory / "pytest.ini").write_text(f"[pytest]\nlambdapool_project = {SAMPLE_APP}\n")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--tests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for label, flags in (("moto, faithful cold starts", ()), ("moto, --fast-cold-starts", ("--fast-cold-starts",))):
            samples = [start_to_first_answer(f"{scratch}/state{i}", *flags) for i in range(args.samples)]
            print(
                f"lambdapool local start to first answer ({label}): median {statistics.median(samples):.3f} s "
                f"(min {min(samples):.3f}, max {max(samples):.3f})"
            )
        directory = Path(scratch) / "suite"
        directory.mkdir()
        one = statistics.median(plugin_run_s(directory, 1) for _ in range(3))
        many = statistics.median(plugin_run_s(directory, args.tests + 1) for _ in range(3))
        per_test = (many - one) / args.tests
        print(
            f"pytest plugin: 1 test {one:.2f} s, {args.tests + 1} tests {many:.2f} s: "
            f"{per_test * 1000:.1f} ms per added test (reset + one call)"
        )


if __name__ == "__main__":
    main()
