"""Cold starts: what a fresh interpreter spends on an app's Init, against what the emulator reports.

    python benchmarks/cold_start.py [--samples 7] [--app boto3|plain]

The app (written to a temporary directory) imports boto3 and creates a client at module level, as many
Lambda functions do (``--app boto3``, the default), or imports only Chalice and lambdapool (``--app plain``).
In the same run, the benchmark measures:

- a fresh interpreter: ``python -c 'import app'`` in the project, timed inside the process around the import
  (what Lambda's Init Duration covers, imports included), and the whole process's wall time;
- the emulator's reported cold start (``timing.coldStart`` of a cold call), by default (the preloaded
  fork server's fresh-interpreter start added back) and with ``fast_cold_starts`` (the fork server's shortcut showing).

Each emulator sample is a cold call: the pool scales to zero with no keep-warm, and the benchmark waits for
the pipeline to be retired before the next call. Prints the medians (and the spread) per way.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests

from lambdapool.emulator import Emulator

APP = textwrap.dedent(
    """
    import boto3
    from chalice import Chalice

    from lambdapool import Pool, Service
    from lambdapool.chalice import mount

    app = Chalice(app_name="coldbench")
    svc = Service("bench")
    S3 = boto3.client("s3", region_name="us-east-1")


    @svc.function(pool=Pool(floor=0, ceil=1, cruise=0, queue=4))
    def ping():
        return "pong"


    mount(app, svc)
    """
)

PLAIN = textwrap.dedent(
    """
    from chalice import Chalice

    from lambdapool import Pool, Service
    from lambdapool.chalice import mount

    app = Chalice(app_name="coldbench")
    svc = Service("bench")


    @svc.function(pool=Pool(floor=0, ceil=1, cruise=0, queue=4))
    def ping():
        return "pong"


    mount(app, svc)
    """
)
APPS = {"boto3": APP, "plain": PLAIN}

FRESH = textwrap.dedent(
    """
    import time
    started = time.perf_counter()
    import app
    print((time.perf_counter() - started) * 1000)
    """
)


def fresh_interpreter(project: Path, samples: int) -> tuple[list[float], list[float]]:
    inits, walls = [], []
    for _ in range(samples):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", FRESH], cwd=project, capture_output=True, text=True, check=True, timeout=120
        ).stdout
        walls.append((time.perf_counter() - started) * 1000)
        inits.append(float(out.strip().splitlines()[-1]))
    return inits, walls


def emulator_cold_starts(project: Path, samples: int, fast: bool) -> tuple[list[float], float]:
    with (
        tempfile.TemporaryDirectory() as state,
        Emulator(project, port=0, state_dir=state, aws="none", keep_warm_s=0, fast_cold_starts=fast) as emulator,
    ):
        emulator.serve_in_thread()
        url = f"http://127.0.0.1:{emulator.port}/public/api/v1/bench/ping/run"
        runtime = emulator.catalog.function("bench-ping")
        assert runtime is not None
        figures = []
        for _ in range(samples):
            deadline = time.monotonic() + 30
            while runtime.status()["pipelines"]["total"] and time.monotonic() < deadline:
                time.sleep(0.01)  # a benchmark, not a test: polling the retirement with a deadline
            answer = requests.post(url, json={}, timeout=120).json()
            assert answer["apiContext"]["coldStart"], answer
            figures.append(answer["timing"]["coldStart"])
        return figures, emulator.status()["coldStarts"]["freshStartMs"]


def describe(figures: list[float]) -> str:
    return f"{statistics.median(figures):8.1f} ms  (min {min(figures):.1f}, max {max(figures):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--app", choices=sorted(APPS), default="boto3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        project = Path(directory)
        (project / "app.py").write_text(APPS[args.app])
        inits, walls = fresh_interpreter(project, args.samples)
        faithful, imports_ms = emulator_cold_starts(project, args.samples, fast=False)
        fast, _ = emulator_cold_starts(project, args.samples, fast=True)
    print(f"app {args.app!r}, {args.samples} samples each (medians)")
    print(f"fresh interpreter, Init (import app)     {describe(inits)}")
    print(f"fresh interpreter, whole process         {describe(walls)}")
    print(f"emulator cold start (default)            {describe(faithful)}")
    print(f"emulator cold start (--fast-cold-starts) {describe(fast)}")
    print(f"fork server start (fresh interpreter + preloaded libraries), added by default: {imports_ms:.1f} ms")
    ratio = statistics.median(faithful) / statistics.median(walls)
    print(f"emulated cold start / fresh interpreter's whole process: {ratio:.2f}")


if __name__ == "__main__":
    main()
