"""The emulator under test in a child process, and the oracle every answer is judged by.

:class:`EmulatorProcess` runs ``serve_emulator.py``; when a request kills or wedges the emulator, the test that
sent it fails with the emulator's exit status and the end of its log, and the emulator is started again so
that the next example meets a working server. :func:`judge` is DESIGN.md section 2's contract, as checks.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .rawhttp import Answer, Exchange, NoAnswerInTime, deep_recursion, exchange, loads, show

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BEHAVIOURS = ROOT / "tests" / "integration" / "apps" / "behaviours"
SCHEDULED = HERE / "apps" / "scheduled"

#: The keys of the keyed service ``secured`` (in the behaviours app and the scheduled app alike).
KEYS = ("s3cr3t-key", "other-key")
KEYED_SERVICE = "secured"

#: DESIGN.md section 2: what an answer's status may be. 204 is the Invoke API's ``DryRun``.
SUCCESS_STATUSES = frozenset({200, 202, 204})
#: DESIGN.md's error table. The README also names 408, 414, 431 and 505 for the HTTP server's own errors;
#: DESIGN.md does not, so they fail here until one of the two documents changes (then add them here).
ERROR_STATUSES = frozenset({400, 401, 404, 405, 413, 429, 500, 502, 503, 504})
ERROR_FIELDS = ("errorType", "message", "detailedMessage")
#: The Invoke API may also answer as AWS Lambda does (``x-amzn-ErrorType``): 403 for a key it does not know.
LAMBDA_ERROR_STATUSES = frozenset({403})

#: The normal call that must still succeed after every example.
HEALTH_REQUEST = (
    b"POST /public/api/v1/b/echo/run HTTP/1.1\r\nHost: robustness\r\nContent-Type: application/json\r\n"
    b'Content-Length: 8\r\n\r\n{"x": 1}'
)

_NOTHING: Any = object()


class EmulatorDied(AssertionError):
    """The emulator process died; it has been started again."""


class EmulatorHung(BaseException):
    """A request got no answer in time, or the emulator stopped answering (it has been started again).

    A ``BaseException`` on purpose: Hypothesis then reports the example at once instead of shrinking it, since
    every shrinking step would wait out the timeout again; pytest still reports the test as failed.
    """


# -- the emulator in a child process ------------------------------------------------------------------------


class EmulatorProcess:
    """One emulator serving ``project_dir`` from a child process (in its own process group), restarted when
    a request kills it. Use as a context manager; every process it started is gone when it exits."""

    def __init__(self, project_dir: Path, workdir: Path):
        self.project_dir = project_dir
        self.workdir = workdir
        self.port = 0
        self.deaths: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = workdir / "emulator.log"
        self._seen: dict[int, int] = {}  # processes seen below the emulator: pid -> start time
        self._starts = 0

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self, timeout_s: float = 60.0) -> None:
        self._starts += 1
        state_dir = self.workdir / f"state-{self._starts}"
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            log.write(f"\n===== start {self._starts} =====\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [sys.executable, str(HERE / "serve_emulator.py"), str(self.project_dir), str(state_dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # its own process group: stopped as one, never by a broad name
            )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._process.stdout], [], [], max(0.0, remaining))
            if not ready:
                self.stop()
                raise RuntimeError(f"the emulator did not start within {timeout_s} s:\n{self.log_tail()}")
            byte = os.read(self._process.stdout.fileno(), 1)
            if not byte:
                self.stop()
                raise RuntimeError(f"the emulator exited while starting:\n{self.log_tail()}")
            line += byte
        self.port = int(line)
        self.process_tree()  # notes the fork server, which lives in a session of its own

    def stop(self) -> None:
        """Close the emulator (its standard input ends), kill its group if it does not end, and make sure the
        processes seen below it (the fork server has a session of its own) are gone too."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                self._note_tree(process.pid)
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # anything left in its group
            if process.stdout is not None:
                process.stdout.close()
        self._end_seen()

    def _end_seen(self) -> None:
        """Wait a little for the processes seen below the emulator to end with it, then kill the rest (only
        those still the same process: same pid and start time)."""
        seen, self._seen = self._seen, {}
        deadline = time.monotonic() + 5
        while (alive := [pid for pid, started in seen.items() if _start_time(pid) == started]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [line for line in text.splitlines() if '" 200 -' not in line]  # request lines are noise
        return "\n".join(kept[-lines:])

    def get_json(self, path: str) -> Any:
        """``GET path`` as JSON (for the tests' own bookkeeping, not part of any fuzzed exchange)."""
        answer = exchange(self.port, f"GET {path} HTTP/1.1\r\nHost: robustness\r\n\r\n".encode(), timeout_s=10).final
        assert answer is not None and answer.status == 200, f"GET {path}: {answer}"
        return answer.json()

    def health_problem(self) -> str | None:
        """What is wrong with the normal call (``POST .../b/echo/run {"x": 1}`` -> 200), or ``None``."""
        try:
            answer = exchange(self.port, HEALTH_REQUEST, timeout_s=10).final
        except NoAnswerInTime:
            return "the normal call got no answer within 10 s"
        except OSError as exc:
            return f"the normal call could not connect: {exc!r}"
        if answer is None or answer.status != 200:
            return f"the normal call was answered {summarize(answer)}"
        try:
            x = answer.json()["response"]["x"]
        except (ValueError, KeyError, TypeError):
            return f"the normal call's envelope is wrong: {summarize(answer)}"
        return None if x == 1 else f"the normal call echoed x={x!r}, not 1"

    def ensure_serving(self, after: str) -> None:
        """Raise :class:`EmulatorDied` (having started a new emulator) unless the emulator is alive and the
        normal call still succeeds."""
        problem = self.health_problem()
        if problem is None and self.alive():
            return
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._note_tree(self._process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)  # a crashing process may still be writing its traceback
        code = self._process.poll() if self._process is not None else None
        if code is None:
            how = f"stopped answering ({problem})"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        tail = self.log_tail()
        self.stop()
        self.deaths.append(f"{how} after {after}")
        self.start()
        message = f"the emulator {how} after {after}\n--- its log ends with ---\n{tail}"
        raise EmulatorHung(message) if code is None else EmulatorDied(message)

    # -- what the process holds (for the leak tests) --------------------------------------------------

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self) -> dict[str, int]:
        """What the emulator's descriptors point at, counted by kind (``socket``, ``pipe``, a file's path...)."""
        kinds: dict[str, int] = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def process_tree(self) -> dict[int, str]:
        """Every process below the emulator (fork server, pipelines): pid -> state letter (Z: zombie)."""
        return {pid: state for pid, (state, _started) in self._note_tree(self.pid).items()}

    def _note_tree(self, root: int) -> dict[int, tuple[str, int]]:
        tree = descendants(root)
        for pid, (_state, started) in tree.items():
            self._seen.setdefault(pid, started)
        return tree


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, tuple[str, int]]:
    """The processes below ``root``: pid -> (state letter, start time)."""
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


# -- what a request is, and what may be answered to it ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
    """Bytes to send, and what the contract allows as their answer.

    ``expected``: the only statuses allowed for the (final) answer, when the request dictates it;
    ``echo_x``: on a 200 from ``b/echo`` (run route or Invoke API), the ``x`` the function must have received;
    ``function_may_fail``: the target endpoint raises or returns what cannot be answered, so a 500 naming the
    function's error is allowed; ``may_not_answer``: the client cut the request short, so a silent close is
    fine. ``keyed`` and ``key_presented`` are read from the bytes.
    """

    data: bytes
    expected: frozenset[int] | None = None
    echo_x: Any = _NOTHING
    function_may_fail: bool = False
    may_not_answer: bool = False
    lambda_api: bool = False
    head: bool = False
    http09: bool = False
    keyed: bool = False
    key_presented: bool = False
    tasks_listing: bool = False
    metrics: bool = False
    #: The dashboard (``/``, ``/__lambdapool__`` and its page and files): HTML, CSS, JS or a redirect to it.
    dashboard: bool = False
    note: str = ""

    @classmethod
    def of(cls, data: bytes, keyed_task_ids: Collection[str] = (), **fields: Any) -> Probe:
        """A probe of ``data``, with what can be read from its request line and headers filled in."""
        method, target, version, authorizations = read_request_head(data)
        http09 = (version is None and bool(target)) or version == "HTTP/0.9"
        path, query = _split_target(target)
        decoded = _decodings(path)
        derived: dict[str, Any] = {
            "lambda_api": any(re.match(r"/2015-03-31/functions/", candidate) for candidate in decoded),
            "head": method == "HEAD" and (version or "").startswith("HTTP/1."),  # a HEAD request, if one at all
            "http09": http09,
            "may_not_answer": http09,  # an HTTP/0.9 client cannot be sent a status: closing is an answer too
            "keyed": targets_keyed_service(decoded, query, keyed_task_ids),
            "key_presented": any(presented_key(value) in KEYS for value in authorizations),
            "tasks_listing": any(re.fullmatch(r"/public/api/v1/tasks/?", candidate) for candidate in decoded),
            "metrics": any(re.fullmatch(r"/metrics/?", candidate) for candidate in decoded),
            "dashboard": method in ("GET", "HEAD")
            and any(re.fullmatch(r"/+(__lambdapool__(/|/dashboard/.*)?)?", candidate) for candidate in decoded),
        }
        if "expected" in fields and fields["expected"] is not None:
            fields["expected"] = frozenset(fields["expected"])
        return cls(data, **{**derived, **fields})

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints for a failing example

    def __repr__(self) -> str:
        parts = [show(self.data)]
        if self.expected is not None:
            parts.append(f"expected={sorted(self.expected)}")
        if self.echo_x is not _NOTHING:
            shown = repr(self.echo_x)
            parts.append(f"echo_x={shown if len(shown) < 120 else shown[:100] + '...'}")
        if self.note:
            parts.append(self.note)
        return f"Probe({', '.join(parts)})"


def read_request_head(data: bytes) -> tuple[str | None, str, str | None, list[str]]:
    """Method, target, HTTP version (``None`` for an HTTP/0.9 line) and ``Authorization`` values, read as
    leniently as any server might."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0].decode("latin-1")
    lines = re.split(r"\r?\n", head)
    words = lines[0].split()
    method = words[0] if words else None
    target = words[1] if len(words) > 1 else ""
    version = words[2] if len(words) > 2 else None
    authorizations = [
        line.partition(":")[2].strip()
        for line in lines[1:]
        if line.partition(":")[0].strip().lower() == "authorization"
    ]
    return method, target, version, authorizations


def presented_key(authorization: str) -> str | None:
    """The API key an ``Authorization`` value carries: Bearer token, Basic user name or SigV4 access key id."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
    signed = re.match(r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/", authorization.strip())
    return signed.group(1) if signed else None


def _split_target(target: str) -> tuple[str, str]:
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", target):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path.partition("#")[0], query


def _decodings(path: str) -> list[str]:
    """``path`` percent-decoded zero to three times (routes decode once, the Invoke API's name twice)."""
    seen = [path]
    for _ in range(3):
        seen.append(unquote(seen[-1], errors="replace"))
    return list(dict.fromkeys(seen))


def targets_keyed_service(decoded_paths: Iterable[str], query: str, keyed_task_ids: Collection[str]) -> bool:
    """Whether a request for this path could reach the keyed service (any route), so that a 2xx needs a key."""
    for path in decoded_paths:
        endpoint = re.fullmatch(r"/public/api/v1/([^/]*)/[^/]*/(?:run|submit)/?", path)
        fire = re.fullmatch(r"/__lambdapool__/schedules/([^/]*)/[^/]*/fire/?", path)
        for found in (endpoint, fire):
            if found and found.group(1) == KEYED_SERVICE:
                return True
        invoke = re.fullmatch(r"/2015-03-31/functions/(.*)/invocations/?", path)
        if invoke and any(f"{KEYED_SERVICE}-" in name for name in _decodings(invoke.group(1))):
            return True
        task = re.fullmatch(r"/public/api/v1/tasks/([^/]*)/?", path)
        if task and task.group(1) in keyed_task_ids:
            return True
        if re.fullmatch(r"/public/api/v1/tasks/?", path):
            service_ids = parse_qs(unquote(query, errors="replace"), keep_blank_values=True).get("serviceId", [])
            if KEYED_SERVICE in service_ids:
                return True
    return False


# -- judging answers ----------------------------------------------------------------------------------------


def summarize(answer: Answer | None, body_limit: int = 300) -> str:
    if answer is None:
        return "nothing"
    status = "no status line" if answer.status is None else f"{answer.status} {answer.reason}"
    headers = {key.lower(): value for key, value in answer.headers}
    interesting = {key: headers[key] for key in ("content-type", "x-amzn-errortype") if key in headers}
    return f"{status} {interesting} {show(answer.body, body_limit)}"


def _is_dashboard(answer: Answer) -> bool:
    """The dashboard's page or files, or a redirect to the page: what its paths answer (not JSON)."""
    if answer.status is None:  # an HTTP/0.9 client gets the body alone: the page, or the redirect's
        return b"/__lambdapool__/" in answer.body
    if answer.status in (301, 302, 308):
        return (answer.header("Location") or "").endswith("/__lambdapool__/")
    content_type = (answer.header("Content-Type") or "").lower()
    return answer.status == 200 and content_type.startswith(("text/html", "text/css", "text/javascript"))


def judge(probe: Probe, result: Exchange) -> list[str]:
    """Everything wrong with the answers to ``probe``: empty when they keep DESIGN.md's contract."""
    problems: list[str] = []
    final = result.final
    if final is None:
        if not probe.may_not_answer:
            how = "reset" if result.reset else "closed"
            problems.append(f"no answer: the server {how} the connection after sending {show(result.raw, 200)}")
        return problems
    for answer in result.answers:
        if answer.status is not None and answer.status < 200:
            continue  # 100 Continue and friends
        problems += _answer_problems(probe, answer)
    if probe.expected is not None and final.status not in probe.expected:
        problems.append(f"expected {sorted(probe.expected)}, got {summarize(final)}")
    if final.status == 200 and probe.echo_x is not _NOTHING:
        problems += _echo_problems(probe, final)
    if result.unparsed and final.status is not None:
        problems.append(f"bytes after the answer(s) that are not an HTTP response: {show(result.unparsed, 200)}")
    return problems


def _answer_problems(probe: Probe, answer: Answer) -> list[str]:
    if probe.dashboard and _is_dashboard(answer):
        return []
    problems: list[str] = []
    content_type = (answer.header("Content-Type") or "").lower()
    if "html" in content_type or answer.body.lstrip()[:1] == b"<":
        problems.append(f"an HTML page, not JSON: {summarize(answer)}")
    if answer.status is None:
        if not probe.http09:
            problems.append(f"an answer without a status line: {summarize(answer)}")
        elif not _is_json(answer):
            problems.append(f"an HTTP/0.9 answer that is not JSON: {summarize(answer)}")
        return problems
    lambda_shaped = probe.lambda_api and answer.header("x-amzn-ErrorType") is not None
    allowed = SUCCESS_STATUSES | ERROR_STATUSES | (LAMBDA_ERROR_STATUSES if lambda_shaped else frozenset())
    if answer.status not in allowed:
        problems.append(f"status {answer.status} is not one DESIGN.md's table allows: {summarize(answer)}")
    if answer.status in SUCCESS_STATUSES:
        if probe.keyed and not probe.key_presented:
            problems.append(f"SECURITY: the keyed service answered {answer.status} to a request without its key")
        if probe.tasks_listing and not probe.key_presented:
            problems += _leaked_tasks(answer)
        if answer.body and not probe.metrics and not probe.head:
            try:
                answer.json()
            except ValueError:
                problems.append(f"a {answer.status} whose body is not JSON: {summarize(answer)}")
        return problems
    if answer.status >= 400 and not probe.head:
        if lambda_shaped:
            try:
                answer.json()
            except ValueError:
                problems.append(f"a Lambda error whose body is not JSON: {summarize(answer)}")
        elif not _is_error_envelope(answer):
            problems.append(
                f"an error that is not the JSON envelope {{errorType, message, detailedMessage}}: {summarize(answer)}"
            )
    if answer.status == 500:
        error_type = _error_type(answer)
        if probe.lambda_api or not probe.function_may_fail:
            problems.append(
                f"a 500 for a request whose function cannot fail (500 is only for function errors): {summarize(answer)}"
            )
        elif error_type == "InternalError":
            problems.append(f"the emulator's own failure (500 InternalError): {summarize(answer)}")
    return problems


def _is_json(answer: Answer) -> bool:
    try:
        answer.json()
    except ValueError:
        return False
    return True


def _is_error_envelope(answer: Answer) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and all(isinstance(body.get(field), str) for field in ERROR_FIELDS)


def _error_type(answer: Answer) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("errorType") if isinstance(body, dict) else None


def _leaked_tasks(answer: Answer) -> list[str]:
    try:
        tasks = answer.json().get("tasks", [])
    except (ValueError, AttributeError):
        return []
    leaked = [task for task in tasks if isinstance(task, dict) and task.get("serviceId") == KEYED_SERVICE]
    return (
        [f"SECURITY: the task list shows {len(leaked)} task(s) of the keyed service without its key"] if leaked else []
    )


def _echo_problems(probe: Probe, answer: Answer) -> list[str]:
    try:
        body = answer.json()
        received = body["x"] if probe.lambda_api else body["response"]["x"]
    except (ValueError, KeyError, TypeError):
        return [f"a 200 that is not b/echo's answer: {summarize(answer)}"]
    expected = loads(probe.echo_x.text if isinstance(probe.echo_x, RawJson) else json.dumps(probe.echo_x))
    with deep_recursion():
        same = received == expected
    if not same:
        return [
            f"the function ran with x={show(repr(received).encode(), 200)} but the request sent "
            f"x={show(repr(expected).encode(), 200)}: the body was not the one sent"
        ]
    return []


@dataclasses.dataclass(frozen=True)
class RawJson:
    """A JSON text as sent (for values Python cannot hold exactly: very deep, very long integers)."""

    text: str

    def __repr__(self) -> str:
        return f"RawJson({show(self.text.encode(), 120)})"


# -- one example --------------------------------------------------------------------------------------------


def run_probe(emulator: EmulatorProcess, probe: Probe, *, half_close: bool = True) -> Exchange | None:
    """Send ``probe``, judge the answer, and check the emulator still serves the normal call; raise
    ``AssertionError`` describing every problem (with the exact bytes sent), :class:`EmulatorDied` if the
    emulator died, :class:`EmulatorHung` if the request or the normal call after it got no answer in time."""
    failure: str | None = None
    result: Exchange | None = None
    try:
        result = exchange(emulator.port, probe.data, half_close=half_close, head_request=probe.head)
    except NoAnswerInTime as exc:
        emulator.ensure_serving(after=f"the request {show(probe.data)}")
        raise EmulatorHung(f"request {show(probe.data)}\n  - no answer in time: {exc}") from None
    except OSError as exc:
        failure = f"could not talk to the emulator: {exc!r}"
    emulator.ensure_serving(after=f"the request {show(probe.data)}")
    if failure is None and result is not None:
        problems = judge(probe, result)
        if problems:
            failure = "\n  - ".join(problems)
    if failure is not None:
        raise AssertionError(f"request {show(probe.data)}\n  - {failure}")
    return result
