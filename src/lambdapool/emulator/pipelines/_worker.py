"""The code that runs inside a pipeline process (forked by the fork server).

A pipeline imports the project's ``app.py`` once (its init code: the cold start), reports ``ready``, then
serves one call at a time from its socket until the emulator closes it. ``describe`` mode imports the app
and reports the declared services instead, so the emulator never runs user code itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any, TextIO

from ..._errors import ChannelClosed, FunctionError, LambdapoolError, OutOfMemory
from ..._invocation import InvocationContext, LambdaFunction, call_endpoint, call_trigger, encode_result
from ..._limits import LOG_TAIL_BYTES
from ..._model import Endpoint, Service
from ..._names import TASK_KEY
from ..._tasks import run_task_event
from ...chalice import trigger_event
from ._config import API_HANDLER, PipelineConfig, PipelineMode
from ._loader import find_services, import_app
from ._routes import RouteServer, describe_app, find_chalice_app
from ._wire import FrameReader, send_frame


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (``ru_maxrss``: one cheap system call per call)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


#: How much of a call's output a pipeline keeps for ``LogType=Tail``: as many characters as Lambda returns
#: bytes (so at least its last 4 KB; the Invoke API cuts the log to the bytes).
LOG_TAIL_CHARS = LOG_TAIL_BYTES


class OutputTee:
    """A text stream that writes through to the pipeline's own stdout or stderr and, while a call asked for
    its log (``LogType=Tail``), keeps the last :data:`LOG_TAIL_CHARS` of what the function wrote.

    With a ``prefix`` (``[demo/add#1] ``), what it writes goes out line by line, each line prefixed and
    written whole, so that the lines of pipelines running side by side never mix mid-line on the console;
    a last unfinished line goes out when the call ends (:meth:`end_call`).

    It captures what Python code writes (``print``, ``logging``, ``sys.stderr``); output a subprocess or a C
    library writes to the file descriptors directly reaches the terminal, unprefixed, but not the tail."""

    def __init__(self, stream: TextIO, sink: list[str] | None = None):
        self._stream = stream
        self.sink = sink
        self.prefix: str | None = None
        self._pending = ""
        self._lock = threading.RLock()
        self._midline = False  # a line was flushed half-way: its rest carries no prefix

    def write(self, text: str) -> int:
        with self._lock:  # the function's own threads print too
            if self.sink is not None:
                self.sink.append(text)
                if len(self.sink) > 64:  # keep the sink short: join what it holds and keep the tail
                    self.sink[:] = ["".join(self.sink)[-LOG_TAIL_CHARS:]]
            if self.prefix is None:
                return self._stream.write(text)
            self._pending += text
            if "\n" in self._pending:
                lines, _, self._pending = self._pending.rpartition("\n")
                first, *rest = lines.split("\n")
                head = first if self._midline else f"{self.prefix}{first}"  # a line flushed half-way goes on
                self._stream.write("".join([f"{head}\n", *(f"{self.prefix}{line}\n" for line in rest)]))
                self._midline = False
                self._stream.flush()
            return len(text)

    def flush(self) -> None:
        """Write out what waits, an unfinished line too (``print(..., end="", flush=True)``, progress
        output; the rest of the line follows it), then flush the stream."""
        with self._lock:
            if self._pending:
                pending, self._pending = self._pending, ""
                self._stream.write(pending if self._midline else f"{self.prefix or ''}{pending}")
                self._midline = self.prefix is not None
            self._stream.flush()

    def end_call(self) -> None:
        """The call is over: write out its last line, even unfinished."""
        with self._lock:
            if self._pending or self._midline:
                pending, self._pending = self._pending, ""
                head = "" if self._midline else self.prefix or ""
                self._stream.write(f"{head}{pending}\n")
                self._midline = False
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class CallOutput:
    """The pipeline's stdout and stderr tees, and the call output they capture when asked."""

    def __init__(self) -> None:
        self._sink: list[str] = []
        self._tees = [OutputTee(sys.stdout), OutputTee(sys.stderr)]
        sys.stdout, sys.stderr = self._tees

    def label(self, prefix: str) -> None:
        """Prefix every line from here on (``[demo/add#1] ``)."""
        for tee in self._tees:
            tee.prefix = prefix

    def end_call(self) -> None:
        for tee in self._tees:
            tee.end_call()

    def start(self) -> None:
        self._sink.clear()
        for tee in self._tees:
            tee.sink = self._sink

    def take(self) -> str:
        """What the call wrote since :meth:`start` (its last :data:`LOG_TAIL_CHARS`); stops capturing."""
        for tee in self._tees:
            tee.flush()
            tee.sink = None
        return "".join(self._sink)[-LOG_TAIL_CHARS:]


def _error_log(reply: dict[str, Any]) -> str:
    """The lines Lambda's runtime logs for an unhandled error (none for a result)."""
    if reply["op"] != "error":
        return ""
    failure = reply["error"]
    lines = f"[ERROR] {failure['errorType']}: {failure['message']}\n"
    if failure["detailedMessage"] != failure["message"]:
        lines += failure["detailedMessage"].rstrip("\n") + "\n"
    return lines


def _find_endpoint(services: list[Service], service_id: str, endpoint_id: str) -> Endpoint:
    for service in services:
        if service.service_id == service_id and endpoint_id in service.endpoints:
            return service.endpoint(endpoint_id)
    raise LookupError(f"app.py no longer declares the endpoint {service_id}/{endpoint_id}")


def _init_failure(exc: BaseException, mode: PipelineMode) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # a handler's init loads what it serves (a plug-in's object, not app.py): "Load failed: <the exception>"
    loaded = "Load failed:" if mode is PipelineMode.HANDLER else f"app.py failed to load: {type(exc).__name__}:"
    message = f"{loaded} {exc}"
    return {
        "op": "init_error",
        "error": {
            "errorType": type(exc).__name__,
            "message": message,
            "detailedMessage": text,
        },
    }


@dataclasses.dataclass(frozen=True)
class Served:
    """What a pipeline serves: one endpoint, or the app's routes (its API handler). ``handle(payload, context,
    lambda_event)`` runs one call and returns the result's JSON bytes."""

    service_id: str
    endpoint_id: str
    lambda_name: str
    memory_mb: int
    where: str
    folders: tuple[str, ...]
    handle: Callable[[bytes, InvocationContext, bool], bytes]

    @classmethod
    def endpoint(cls, endpoint: Endpoint) -> Served:
        return cls(
            endpoint.service_id,
            endpoint.endpoint_id,
            endpoint.lambda_name,
            endpoint.memory_mb,
            endpoint.where,
            tuple(endpoint.folders),
            lambda payload, context, lambda_event: _call(endpoint, payload, context, lambda_event),
        )

    @classmethod
    def handler(cls, config: PipelineConfig) -> Served:
        """The handler ``config`` names by its import path (see :func:`._config.handler_path`), made by
        calling its factory with the configured options: that call is the pipeline's init."""
        module_name, _, factory_name = config.handler.partition(":")
        factory = getattr(importlib.import_module(module_name), factory_name)
        handle = factory(**config.handler_options)
        memory_mb = int(config.environment.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        lambda_name = f"{config.service_id}-{config.endpoint_id}"
        where = f"{config.service_id}/{config.endpoint_id}"
        return cls(config.service_id, config.endpoint_id, lambda_name, memory_mb, where, (), handle)

    @classmethod
    def routes(cls, module: ModuleType, config: PipelineConfig) -> Served:
        app = find_chalice_app(module)
        if app is None:
            raise LookupError("app.py no longer has a Chalice app")
        memory_mb = int(config.environment.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        server = RouteServer(app)
        return cls(config.service_id, API_HANDLER, API_HANDLER, memory_mb, "the app's routes", (), server.handle)


#: ``setproctitle.setproctitle``, kept here once :func:`prepare_naming` has loaded it (``None``: not loaded).
_set_title: Callable[[str], None] | None = None


def prepare_naming() -> None:
    """In the fork server: load ``setproctitle`` and let it do its one-time setup (it moves the environment
    to make room for titles), so that each pipeline inherits both instead of paying them: about 1 MB of
    private memory per pipeline. The title it sets is the one the process has.

    The module is then taken out of ``sys.modules``, this module keeping the function it needs: it is the
    emulator's dependency, not the function's, and Lambda's runtime has no ``setproctitle`` for user code to
    import (what the sandbox leaves on ``sys.path`` decides whether importing it finds a copy)."""
    global _set_title
    try:
        import setproctitle
    except ImportError:  # a dependency; without it, ps shows the fork server's command line
        return
    setproctitle.setproctitle(setproctitle.getproctitle())
    _set_title = setproctitle.setproctitle
    for name in [name for name in sys.modules if name == "setproctitle" or name.startswith("setproctitle.")]:
        del sys.modules[name]


#: What a pipeline's log records look like on its console (the root logger's handler, level INFO).
LOG_FORMAT = "[%(name)s] %(levelname)s %(message)s"


_handler: logging.StreamHandler[TextIO] | None = None


def prepare_logging() -> None:
    """Give the root logger the pipelines' handler (level INFO, :data:`LOG_FORMAT`), as Lambda's runtime
    does before the app's init code runs (so a ``logging.basicConfig`` there does nothing, as on Lambda).
    Done once in the fork server, so that each pipeline inherits it instead of paying for it (about 0.25 MB
    of private memory per pipeline); :func:`_log_to` then points it at the pipeline's stderr."""
    global _handler
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        _handler = root.handlers[0]  # type: ignore[assignment]


def _log_to(stream: TextIO) -> None:
    """Make the handler :func:`prepare_logging` installed write to ``stream`` (the pipeline's stderr tee),
    the stream it keeps whatever the function later does to ``sys.stderr``, as Lambda's handler does."""
    prepare_logging()
    if _handler is not None:
        _handler.stream = stream


def _name_process(config: PipelineConfig) -> None:
    """What ``ps`` shows: ``lambdapool: demo/add #1`` (or ``lambdapool: describing app.py``)."""
    if _set_title is None:
        return
    described = config.mode is PipelineMode.DESCRIBE
    _set_title("lambdapool: describing app.py" if described else "lambdapool: " + config.name.replace("#", " #"))


def run(sock: socket.socket, config: PipelineConfig) -> int:
    """Serve ``config`` on ``sock`` until the emulator closes it; returns the exit code."""
    started = time.perf_counter()
    _name_process(config)
    for name, value in config.environment.items():  # not .update(): MutableMapping's generic one costs more
        os.environ[name] = value
    time.tzset()  # forked from a process that has read its time zone already: take the pipeline's (Lambda's) TZ
    os.chdir(config.project_dir)
    output = CallOutput()
    if config.mode is not PipelineMode.DESCRIBE:
        output.label(f"[{config.name}] ")  # init code's output too
    _log_to(sys.stderr)  # the tee
    if config.cold_start_delay_ms:
        time.sleep(config.cold_start_delay_ms / 1000)  # the provider's extra cold-start overhead being emulated
    try:
        if config.mode is PipelineMode.HANDLER:  # not the app's code: no import of it
            served = Served.handler(config)
            init_ms = (time.perf_counter() - started) * 1000
            send_frame(sock, {"op": "ready", "pid": os.getpid(), "initMs": init_ms, "peakRssBytes": peak_rss_bytes()})
            return _serve(sock, served, config, output)
        module = import_app(config.project_dir, code_dir=config.code_dir or None)
        if config.mode is PipelineMode.DESCRIBE:
            app = find_chalice_app(module)
            services = find_services(module, required=app is None)
            described = describe_app(app).to_json() if app is not None else None
            send_frame(
                sock,
                {"op": "described", "services": [service.spec().to_json() for service in services], "app": described},
            )
            return 0
        if config.mode is PipelineMode.ROUTES:
            served = Served.routes(module, config)
        else:
            served = Served.endpoint(_find_endpoint(find_services(module), config.service_id, config.endpoint_id))
    except Exception as exc:
        output.end_call()  # what init code printed before it failed
        send_frame(sock, _init_failure(exc, config.mode))
        return 1
    init_ms = (time.perf_counter() - started) * 1000
    send_frame(sock, {"op": "ready", "pid": os.getpid(), "initMs": init_ms, "peakRssBytes": peak_rss_bytes()})
    return _serve(sock, served, config, output)


def _call(endpoint: Endpoint, payload: bytes, context: InvocationContext, lambda_event: bool) -> bytes:
    """Run one call: a trigger's raw Lambda event, a task a deployed ``/submit`` route sent (run as on
    Lambda; only in an event of the Lambda Invoke API, ``lambda_event``: a request body never carries
    one), or the bound arguments of a plain call."""
    arguments = json.loads(payload) if payload else {}
    if endpoint.trigger is not None:
        return call_trigger(endpoint, trigger_event(endpoint, arguments, context), context)
    if lambda_event and TASK_KEY in arguments:
        return encode_result(run_task_event(endpoint, arguments, context))
    return call_endpoint(endpoint, arguments, context)


def _serve(sock: socket.socket, served: Served, config: PipelineConfig, output: CallOutput) -> int:
    folders = [os.path.join(config.project_dir, folder) for folder in served.folders]  # LAMBDA_TASK_ROOT's
    # what the pipeline was started with, not os.environ, which init code may have changed
    function = LambdaFunction.from_environment(config.environment, served.lambda_name, served.memory_mb)
    calls = 0
    reader = FrameReader(sock)
    while True:
        try:
            header, payload = reader.read()
        except ChannelClosed:
            return 0
        calls += 1
        context = InvocationContext(
            request_id=header["requestId"],
            service_id=served.service_id,
            endpoint_id=served.endpoint_id,
            deadline=time.time() + header["timeoutS"],
            cold_start=calls == 1 and header.get("cold", False),
            pipeline_id=config.pipeline_id,
            folders=folders,
            function=function,
        )
        tail = bool(header.get("tail"))
        if tail:
            output.start()
        started = time.perf_counter()
        result = b""
        exit_after = False
        reply: dict[str, Any] = {"op": "result"}
        try:
            result = served.handle(payload, context, bool(header.get("lambdaEvent")))
        except FunctionError as exc:
            error: LambdapoolError = exc
            if isinstance(exc.__cause__, MemoryError):
                error = OutOfMemory.over(served.where, served.memory_mb, exc.detailed_message)
                exit_after = True
            reply = {"op": "error", "error": error.to_body()}
        except LambdapoolError as exc:
            reply = {"op": "error", "error": exc.to_body(), "retryAfterS": exc.retry_after_s}
        except Exception as exc:  # outside the user's function (e.g. a task's state store): report, not crash
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            error = FunctionError.of(exc, trace)
            reply = {"op": "error", "error": error.to_body()}
        reply["executionMs"] = (time.perf_counter() - started) * 1000
        reply["peakRssBytes"] = peak_rss_bytes()
        if tail:
            reply["log"] = (output.take() + _error_log(reply))[-LOG_TAIL_CHARS:]
        output.end_call()
        send_frame(sock, reply, result)
        if exit_after:
            return 1
