"""Soak test: minutes (or hours) of mixed, faulty load against ``lambdapool local``, every answer checked, and
the emulator's resources sampled as it goes.

    python benchmarks/soak.py --minutes 10 [--clients 12] [--sample-s 10] [--seed 1]

It starts ``lambdapool local benchmarks/soak_app --port 0 --aws none`` (its own process group; the URL is read
from its banner), warms it up, then runs ``--clients`` client processes, each with one keep-alive
``http.client`` connection, sending a weighted mix of calls: quick successes, slow successes, functions that
raise, call ``os._exit``, segfault, run past ``timeout_s`` or allocate past ``memory_mb``, malformed bodies,
unknown endpoints and Lambda Invoke API calls. Every answer is checked against what its endpoint calls for
(status, errorType, and a success's exact response). Every ``--sample-s`` seconds it samples the emulator
process: resident memory, threads, open descriptors, and the processes below it (fork server, pipelines).

At the end it prints, per kind of call, what was sent, answered, lost (no answer: connection errors,
timeouts) and wrong (an unexpected status, errorType or body); then the resource samples over time, which
must be flat; then the footprint once the load has stopped, compared with the one after warm-up. It exits 1
if anything was lost or wrong, or if the emulator did not come back to its footprint (a leak). Every process
it starts is ended on every path. Not run by CI: the developers run it for 10 minutes or more.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP = HERE / "soak_app"
RUN = "/public/api/v1/soak/{}/run"

# -- the mix: what is sent, and what must come back ---------------------------------------------------------

#: (method, path, body, headers)
Request = tuple[str, str, bytes, dict[str, str]]
#: A check of (status, headers, body) returning what is wrong, or None.
Check = Callable[[int, http.client.HTTPMessage, bytes], "str | None"]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def expect_error(status: int, error_type: str, message_part: str = "") -> Check:
    def check(got: int, headers: http.client.HTTPMessage, body: bytes) -> str | None:
        data = _json(body)
        if got != status or not isinstance(data, dict) or data.get("errorType") != error_type:
            return f"expected {status} {error_type}, got {got} {body[:200]!r}"
        if not all(isinstance(data.get(field), str) for field in ("message", "detailedMessage")):
            return f"an error without message/detailedMessage: {body[:200]!r}"
        if message_part and message_part not in data["message"] + data["detailedMessage"]:
            return f"the error does not mention {message_part!r}: {body[:200]!r}"
        return None

    return check


def expect_response(endpoint: str, response: Any) -> Check:
    def check(got: int, headers: http.client.HTTPMessage, body: bytes) -> str | None:
        data = _json(body)
        if got != 200 or not isinstance(data, dict):
            return f"expected 200, got {got} {body[:200]!r}"
        if data.get("response") != response:
            return f"expected response {response!r}, got {body[:200]!r}"
        if (data.get("apiContext") or {}).get("endpointId") != endpoint:
            return f"answered by the wrong endpoint: {body[:200]!r}"
        return None

    return check


def expect_invoke_result(result: Any) -> Check:
    def check(got: int, headers: http.client.HTTPMessage, body: bytes) -> str | None:
        if got != 200 or headers.get("X-Amz-Function-Error"):
            return f"expected 200 without X-Amz-Function-Error, got {got} {dict(headers)} {body[:200]!r}"
        return None if _json(body) == result else f"expected {result!r}, got {body[:200]!r}"

    return check


def run(endpoint: str, body: Any) -> tuple[str, str, bytes, dict[str, str]]:
    return "POST", RUN.format(endpoint), json.dumps(body).encode(), {"Content-Type": "application/json"}


def build_ok(rng: random.Random) -> tuple[Request, Check]:
    n = rng.randrange(10**6)
    return run("ok", {"n": n}), expect_response("ok", {"n": n, "square": n * n})


def build_slow(rng: random.Random) -> tuple[Request, Check]:
    ms = rng.randrange(20, 300)
    return run("slow", {"ms": ms}), expect_response("slow", {"slept": ms})


def build_boom(rng: random.Random) -> tuple[Request, Check]:
    n = rng.randrange(10**6)
    return run("boom", {"n": n}), expect_error(500, "ValueError", f"boom {n}")


def build_exit(rng: random.Random) -> tuple[Request, Check]:
    return run("exit_hard", {}), expect_error(502, "PipelineCrashed")


def build_segfault(rng: random.Random) -> tuple[Request, Check]:
    return run("segfault", {}), expect_error(502, "PipelineCrashed")


def build_hang(rng: random.Random) -> tuple[Request, Check]:
    return run("hang", {}), expect_error(504, "Timeout")


def build_hog(rng: random.Random) -> tuple[Request, Check]:
    return run("hog", {"megabytes": 256}), expect_error(502, "OutOfMemory")


def build_bad_json(rng: random.Random) -> tuple[Request, Check]:
    body = rng.choice([b'{"n": ', b"[1, 2]", b'{"n": NaN}', b"\xff\xfe", b'{"n": 1, "zzz": 2}'])
    return ("POST", RUN.format("ok"), body, {}), expect_error(400, "BadRequest")


def build_unknown(rng: random.Random) -> tuple[Request, Check]:
    return run(f"nope{rng.randrange(100)}", {}), expect_error(404, "NotFound")


def build_invoke(rng: random.Random) -> tuple[Request, Check]:
    n = rng.randrange(10**6)
    request: Request = ("POST", "/2015-03-31/functions/soak-ok/invocations", json.dumps({"n": n}).encode(), {})
    return request, expect_invoke_result({"n": n, "square": n * n})


#: kind -> (weight, builder)
MIX: dict[str, tuple[int, Callable[[random.Random], tuple[Request, Check]]]] = {
    "ok": (50, build_ok),
    "slow": (10, build_slow),
    "boom": (8, build_boom),
    "exit_hard": (5, build_exit),
    "segfault": (5, build_segfault),
    "hang": (3, build_hang),
    "hog": (3, build_hog),
    "bad_json": (6, build_bad_json),
    "unknown": (4, build_unknown),
    "invoke": (6, build_invoke),
}


# -- one client process -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """What happened to the calls of one kind: sent, answered, lost (no answer), wrong; answer times (ms)."""

    sent: int = 0
    answered: int = 0
    lost: int = 0
    wrong: int = 0
    ms: list[float] = dataclasses.field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.sent += other.sent
        self.answered += other.answered
        self.lost += other.lost
        self.wrong += other.wrong
        self.ms += other.ms


def client(index: int, port: int, until: float, seed: int, results: Any) -> None:
    """Send the mix over one keep-alive connection until ``until`` (a ``time.time()``), checking every answer;
    put ``(index, {kind: counts}, examples)`` on ``results``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the soak's to handle: it ends the clients
    rng = random.Random(seed * 1_000_003 + index)
    kinds = list(MIX)
    weights = [MIX[kind][0] for kind in kinds]
    stats = {kind: Tally() for kind in kinds}
    examples: list[str] = []
    connection: http.client.HTTPConnection | None = None
    try:
        while time.time() < until:
            kind = rng.choices(kinds, weights)[0]
            (method, path, body, headers), check = MIX[kind][1](rng)
            counts = stats[kind]
            counts.sent += 1
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                counts.lost += 1
                if len(examples) < 200:  # the first ones of each client, to show
                    examples.append(f"lost   {kind}: {method} {path} {body[:80]!r}: {exc!r}")
                if connection is not None:
                    connection.close()
                connection = None
                continue
            counts.answered += 1
            counts.ms.append((time.perf_counter() - started) * 1000)
            problem = check(response.status, response.headers, data)
            if problem is not None:
                counts.wrong += 1
                if len(examples) < 200:  # the first ones of each client, to show
                    examples.append(f"wrong  {kind}: {method} {path} {body[:80]!r}: {problem}")
            if response.will_close:
                connection.close()
                connection = None
    finally:
        if connection is not None:
            connection.close()
        results.put((index, stats, examples))


def run_clients(count: int, port: int, seconds: float, seed: int) -> tuple[dict[str, Tally], list[str]]:
    """Run ``count`` client processes for ``seconds``; their merged tallies and examples of what went wrong."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    until = time.time() + seconds
    processes = [context.Process(target=client, args=(i, port, until, seed, results)) for i in range(count)]
    merged = {kind: Tally() for kind in MIX}
    examples: list[str] = []
    try:
        for process in processes:
            process.start()
        for _ in processes:
            _index, stats, found = results.get(timeout=seconds + 180)
            for kind, tally in stats.items():
                merged[kind].add(tally)
            examples += found
        for process in processes:
            process.join(timeout=30)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    return merged, examples


# -- the emulator and its footprint -------------------------------------------------------------------------


class Emulator:
    """``lambdapool local APP --port 0 --aws none`` in its own process group, its output in a log file."""

    def __init__(self, app: Path, workdir: Path):
        self.log_path = workdir / "emulator.log"
        executable = Path(sys.executable).with_name("lambdapool")
        command = [str(executable)] if executable.exists() else [sys.executable, "-m", "lambdapool.cli"]
        command += ["local", str(app), "--port", "0", "--aws", "none", "--state-dir", str(workdir / "state")]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            cwd=workdir,
            preexec_fn=_terminate_with_parent,
        )
        self.seen: dict[int, int] = {}  # every process seen below the emulator: pid -> start time
        self.url = ""
        self._banner = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, name="soak-emulator-stdout", daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()
            found = re.search(rb"Serving on (http://\S+)", line)
            if found and not self.url:
                self.url = found.group(1).decode()
                self._banner.set()
        self._banner.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(self, timeout_s: float = 120) -> None:
        if not self._banner.wait(timeout_s) or not self.url:
            raise RuntimeError(f"the emulator printed no URL within {timeout_s} s; see {self.log_path}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                if self.status():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the emulator at {self.url} never answered; see {self.log_path}")

    def status(self) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", "/__lambdapool__/status")
            response = connection.getresponse()
            return dict(json.loads(response.read()))
        finally:
            connection.close()

    def sample(self) -> dict[str, float]:
        """RSS (MB), threads, descriptors of the emulator process; processes below it, and zombies."""
        pid = self.process.pid
        with open(f"/proc/{pid}/statm") as statm:
            rss_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        tree = descendants(pid)
        for child, (_state, started) in tree.items():
            self.seen.setdefault(child, started)
        return {
            "rss_mb": round(rss_mb, 1),
            "threads": len(os.listdir(f"/proc/{pid}/task")),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "children": len(tree),
            "zombies": sum(state == "Z" for state, _ in tree.values()),
        }

    def settled(self, timeout_s: float = 60) -> tuple[dict[str, float], int]:
        """Wait until no pipeline is starting or busy and no queue holds anything, then the footprint (the
        smallest of a few readings) and the number of pipelines the status page reports."""
        deadline = time.monotonic() + timeout_s
        while True:
            endpoints = [e for s in self.status()["services"].values() for e in s["endpoints"].values()]
            busy = any(e["pipelines"]["starting"] or e["pipelines"]["busy"] or e["queue"]["depth"] for e in endpoints)
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        readings = []
        for _ in range(5):
            readings.append(self.sample())
            time.sleep(0.1)
        pipelines = sum(e["pipelines"]["total"] for e in endpoints)
        return {key: min(reading[key] for reading in readings) for key in readings[0]}, pipelines

    def stop(self) -> None:
        """SIGTERM (the CLI closes the emulator: pipelines, fork server), then SIGKILL for its process group,
        then any process ever seen below it that is still alive (the fork server has a session of its own)."""
        with contextlib.suppress(Exception):
            self.sample()  # one last look at what is running below it
        stopping = time.monotonic()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        code = self.process.poll()
        print(f"soak: the emulator stopped in {time.monotonic() - stopping:.1f} s (exit code {code})", flush=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (alive := [pid for pid, started in self.seen.items() if start_time(pid) == started]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)  # the fork server ends its pipelines once the emulator is gone
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=5)
        self._log.close()


def _terminate_with_parent() -> None:
    """In the emulator's process, before it runs: Linux sends it SIGTERM (a clean stop) if the soak dies."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, tuple[str, int]]:
    """Every process below ``root``: pid -> (state letter, start time)."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        info[int(entry)] = (fields[0], int(fields[19]))
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, tuple[str, int]] = {}
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found[child] = info[child]
                pending.append(child)
    return found


class Sampler:
    """Samples the emulator every ``interval_s`` seconds from a thread, until stopped."""

    def __init__(self, emulator: Emulator, interval_s: float, started: float):
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._emulator, self._interval_s, self._started = emulator, interval_s, started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic() - self._started, self._emulator.sample()))
            if self._stop.wait(self._interval_s):
                return


# -- the report ---------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def print_calls(merged: dict[str, Tally]) -> Tally:
    """The table of calls per kind, and their total."""
    print(f"{'kind':<10} {'sent':>7} {'answered':>9} {'lost':>6} {'wrong':>6} {'p50 ms':>8} {'p99 ms':>8}")
    total = Tally()
    for kind, tally in [*merged.items(), ("total", total)]:
        if kind != "total":
            total.add(tally)
        print(
            f"{kind:<10} {tally.sent:>7} {tally.answered:>9} {tally.lost:>6} {tally.wrong:>6} "
            f"{percentile(tally.ms, 0.5):>8.1f} {percentile(tally.ms, 0.99):>8.1f}"
        )
    return total


def print_samples(rows: list[tuple[str, dict[str, float]]]) -> None:
    print(f"{'t (s)':>12} {'rss MB':>8} {'threads':>8} {'fds':>6} {'children':>9} {'zombies':>8}")
    for label, sample in rows:
        print(
            f"{label:>12} {sample['rss_mb']:>8.1f} {sample['threads']:>8} {sample['fds']:>6} "
            f"{sample['children']:>9} {sample['zombies']:>8}"
        )


def print_examples(examples: list[str], limit: int = 20) -> None:
    """What was lost or wrong, once per kind of problem (numbers blurred), with how often it was seen among the
    examples the clients kept (their first 200 each)."""
    seen: dict[str, tuple[int, str]] = {}
    for example in examples:
        key = re.sub(r"\d+", "N", example)[:160]
        count, first = seen.get(key, (0, example))
        seen[key] = (count + 1, first)
    for count, first in sorted(seen.values(), key=lambda item: -item[0])[:limit]:
        print(f"  {count:>4} x {first[:400]}")


def trend(samples: list[tuple[float, dict[str, float]]], key: str) -> str:
    """The change of ``key`` between the first and the last third of the samples under load (medians)."""
    values = [sample[key] for _, sample in samples]
    if len(values) < 3:
        return "n/a"
    third = max(1, len(values) // 3)
    change = statistics.median(values[-third:]) - statistics.median(values[:third])
    return f"{change:+.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to load the emulator (10)")
    parser.add_argument("--clients", type=int, default=12, help="client processes, one connection each (12)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between resource samples (10)")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="load before the baseline footprint (10)")
    parser.add_argument("--seed", type=int, default=1, help="the mix's random seed (1)")
    parser.add_argument("--app", type=Path, default=APP, help="the soak project (benchmarks/soak_app)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)  # kill PID stops the soak as cleanly as Ctrl-C

    workdir = Path(tempfile.mkdtemp(prefix="lambdapool-soak-"))
    emulator: Emulator | None = None
    try:
        emulator = Emulator(args.app.resolve(), workdir)
        emulator.wait_ready()
        emulator.sample()  # note the fork server and pipelines, so that stop() can end them whatever happens
        plan = f"{args.clients} clients, {args.minutes:g} min, samples every {args.sample_s:g} s"
        print(f"soak: lambdapool local {args.app} at {emulator.url} (pid {emulator.process.pid}), {plan}", flush=True)
        warm, warm_examples = run_clients(args.clients, emulator.port, args.warmup_s, args.seed + 1)
        baseline, pipelines_before = emulator.settled()
        started = time.monotonic()
        with Sampler(emulator, args.sample_s, started) as sampler:
            merged, examples = run_clients(args.clients, emulator.port, args.minutes * 60, args.seed)
        load_s = time.monotonic() - started

        def leaks_in(final: dict[str, float], pipelines_after: int) -> list[str]:
            """What the settled footprint holds beyond the baseline (a pool may settle nearer its cruise than
            after the warm-up: two descriptors and a thread per extra pipeline are allowed)."""
            allowance = 2 * max(0, pipelines_after - pipelines_before)
            found = []
            if final["fds"] > baseline["fds"] + allowance:
                found.append(f"descriptors {baseline['fds']:.0f} -> {final['fds']:.0f}")
            if final["threads"] > baseline["threads"] + allowance:
                found.append(f"threads {baseline['threads']:.0f} -> {final['threads']:.0f}")
            if final["children"] != pipelines_after + 1:  # the fork server and the pipelines the pools report
                found.append(f"{final['children']:.0f} processes below the emulator for {pipelines_after} pipelines")
            if final["zombies"]:
                found.append(f"{final['zombies']:.0f} zombie processes")
            return found

        final, pipelines_after = emulator.settled()
        deadline = time.monotonic() + 30
        while leaks_in(final, pipelines_after) and time.monotonic() < deadline:
            time.sleep(0.5)
            final, pipelines_after = emulator.settled()
        leaks = leaks_in(final, pipelines_after)
        if emulator.process.poll() is not None:
            print(f"soak: the emulator exited with {emulator.process.returncode}; see {emulator.log_path}")

        print(f"\ncalls during {load_s:.0f} s of load ({args.clients} concurrent clients):")
        total = print_calls(merged)
        warm_total = Tally()
        for tally in warm.values():
            warm_total.add(tally)
        print(f"(warm-up: {warm_total.sent} sent, {warm_total.lost} lost, {warm_total.wrong} wrong)")
        print_examples(warm_examples + examples)

        print("\nthe emulator process over time (children: the fork server and the pipelines below it):")
        rows = [("baseline", baseline)]
        rows += [(f"{t:.0f}", sample) for t, sample in sampler.samples]
        rows.append(("settled", final))
        print_samples(rows)
        under_load = sampler.samples[1:] or sampler.samples
        trends = ", ".join(f"{key} {trend(under_load, key)}" for key in ("rss_mb", "threads", "fds", "children"))
        print(f"trend under load (last third - first third, medians): {trends}")

        lost, wrong = total.lost + warm_total.lost, total.wrong + warm_total.wrong
        verdict = "OK" if not (lost or wrong or leaks) else "FAILED"
        print(f"\nsoak {verdict}: {lost} lost, {wrong} wrong" + (f"; leaks: {'; '.join(leaks)}" if leaks else ""))
        return 0 if verdict == "OK" else 1
    except KeyboardInterrupt:
        print("soak: interrupted; stopping everything it started", flush=True)
        return 130
    finally:
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
