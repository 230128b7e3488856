"""Driving HTTP servers with ``wrk``, a C load generator whose own CPU cost per request is negligible (a Python
client competes with the servers for the same cores and flattens their differences).

``ensure_wrk()`` installs it with apt-get when it is missing and this runs as root, saying so; otherwise it
exits with a clear message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def ensure_wrk() -> str:
    """The path of ``wrk``, installed if needed (see the module docstring)."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is not installed: installing it with apt-get install wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True, timeout=900)
        found = shutil.which("wrk")
    if found is None:
        sys.exit("wrk is needed to measure HTTP throughput: install it (apt-get install wrk, brew install wrk)")
    return found


@dataclasses.dataclass(frozen=True)
class Load:
    """What one ``wrk`` run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _ms(text: str, label: str) -> float:
    found = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", text)
    if found is None:
        return float("nan")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def run_wrk(
    url: str,
    connections: int,
    seconds: float,
    body: bytes,
    *,
    close: bool = False,
    headers: dict[str, str] | None = None,
) -> Load:
    """POST ``body`` to ``url`` from ``connections`` connections for ``seconds``, each on one kept-alive
    connection, or (``close``) a new connection per request (``Connection: close``)."""
    wrk = ensure_wrk()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if close:
        all_headers["Connection"] = "close"
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    lines += [f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}" for name, value in all_headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        threads = max(1, min(connections, 2))
        done = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script.name).unlink()
    out = done.stdout
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors and not close:  # with Connection: close, wrk counts each server-side close as a read error
        errors += sum(int(value) for value in socket_errors.groups())
    return Load(
        rps=float(rate.group(1)) if rate else 0.0,
        p50_ms=_ms(out, "50%"),
        p99_ms=_ms(out, "99%"),
        requests=int(total.group(1)) if total else 0,
        errors=errors,
    )


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
