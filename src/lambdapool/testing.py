"""The pytest plugin: test a project's endpoints through the emulator, or their code against moto.

Fixtures (registered through the ``pytest11`` entry point):

- ``lambdapool``: ``lambdapool local`` for the project on a free loopback port (with its local AWS on moto),
  as an :class:`EmulatorClient`. One emulator per project serves the whole session (a suite of a hundred
  tests pays one start); before each test it is reset: work in flight ends, tasks, counters and errors are
  forgotten and moto is emptied (the buckets the S3 triggers watch come back, empty), while the pipelines
  stay warm. It is stopped when the session ends;
- ``lambdapool_project``: the project directory; by default the ``lambdapool_project`` ini option (relative
  to the rootdir), else the rootdir. Override it in a ``conftest.py`` to point elsewhere;
- ``lambdapool_moto``: moto's in-process ``mock_aws`` with safe dummy credentials, for plain unit tests of
  endpoint code that calls boto3 (no account, nothing leaves the process).

Dataiku's test queries (``test_queries/<service>/<endpoint>.json`` beside a project's ``app.py``) are
collected as tests, one per query, played against the session's emulator of that project (the ini option
``lambdapool_test_queries = false`` turns that off).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ._limits import API_GATEWAY_TIMEOUT_S, ASYNC_RETRY_DELAY_S
from .emulator import Emulator
from .emulator.project._test_queries import QueryOutcome, TestQuery, TestQueryError, load_file, play, query_file_of

__all__ = ["Answer", "EmulatorClient", "Emulators"]

T = TypeVar("T")


class Answer:
    """An HTTP answer of the emulator: ``status``, the JSON ``body`` and ``headers``."""

    def __init__(self, status: int, body: Any, headers: dict[str, str]):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def response(self) -> Any:
        """The function's result (``body["response"]``); raises ``AssertionError`` for an error answer."""
        assert self.status == 200, f"the call failed with {self.status}: {self.body}"
        return self.body["response"]

    @property
    def error_type(self) -> str | None:
        return self.body.get("errorType") if isinstance(self.body, dict) else None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r})"


class EmulatorClient:
    """Talks to a running emulator over real HTTP.

    ``url`` is the emulator's base URL; :meth:`request` sends any request (a JSON body, extra headers) and
    answers an :class:`Answer`; :meth:`run`, :meth:`submit`, :meth:`task` and :meth:`fire` are the usual
    calls; :meth:`with_key` a client that sends an API key; :attr:`s3` and :attr:`lambda_client` boto3
    clients on the emulator's local AWS and on its Lambda Invoke API.
    """

    def __init__(self, emulator: Emulator, headers: dict[str, str] | None = None):
        self.emulator = emulator
        self.url = emulator.url
        self.headers = dict(headers or {})

    def with_key(self, api_key: str) -> EmulatorClient:
        """A client for the same emulator that sends ``api_key`` (as ``Authorization: Bearer <key>``)."""
        return EmulatorClient(self.emulator, {**self.headers, "Authorization": f"Bearer {api_key}"})

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        sent = {**self.headers, **(headers or {})}
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                status, raw, answer_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, answer_headers = error.code, error.read(), dict(error.headers)
        return Answer(status, json.loads(raw) if raw else None, answer_headers)

    def run(self, service: str, endpoint: str, **params: Any) -> Answer:
        """Call ``/run`` and wait."""
        return self.request("POST", f"/public/api/v1/{service}/{endpoint}/run", params)

    def submit(self, service: str, endpoint: str, **params: Any) -> str:
        """Call ``/submit``; returns the task id."""
        answer = self.request("POST", f"/public/api/v1/{service}/{endpoint}/submit", params)
        assert answer.status == 202, answer
        return str(answer.body["taskId"])

    def task(self, task_id: str) -> dict[str, Any]:
        answer = self.request("GET", f"/public/api/v1/tasks/{task_id}")
        assert answer.status == 200, answer
        task: dict[str, Any] = answer.body
        return task

    def functions(self) -> list[dict[str, Any]]:
        """Every endpoint's definition and its running and queued calls (``GET /__lambdapool__/functions``)."""
        listed: list[dict[str, Any]] = self.request("GET", "/__lambdapool__/functions").body["functions"]
        return listed

    def terminate_tasks(self, service: str, endpoint: str) -> list[str]:
        """Terminate every queued and running task of the endpoint; returns their ids."""
        answer = self.request("DELETE", f"/public/api/v1/tasks?serviceId={service}&endpointId={endpoint}")
        assert answer.status == 200, answer
        terminated: list[str] = answer.body["terminated"]
        return terminated

    def fire(self, service: str, endpoint: str) -> Answer:
        """Fire a scheduled endpoint now (through its pool) and return its answer."""
        return self.request("POST", f"/__lambdapool__/schedules/{service}/{endpoint}/fire")

    def stats(self, service: str, endpoint: str) -> dict[str, Any]:
        """The endpoint's part of ``/__lambdapool__/status``: pool, pipelines, queue, counters, lastError."""
        status = self.request("GET", "/__lambdapool__/status").body
        stats: dict[str, Any] = status["services"][service]["endpoints"][endpoint]
        return stats

    @property
    def s3(self) -> Any:
        """A boto3 S3 client on the emulator's local AWS."""
        return self.emulator.aws.client("s3")

    @property
    def lambda_client(self) -> Any:
        """A boto3 Lambda client on the emulator's Invoke API (functions by their deployed names)."""
        import boto3

        key = self.headers.get("Authorization", "Bearer testing").removeprefix("Bearer ")
        return boto3.client(
            "lambda",
            endpoint_url=self.url,
            region_name=self.emulator.catalog.region,
            aws_access_key_id=key,  # a keyed service's key, presented as Lambda's access key id
            aws_secret_access_key="testing",
        )

    @staticmethod
    def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.02) -> T:
        """Poll ``predicate`` until it returns something truthy and return it; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout} s: {predicate}")
            time.sleep(interval)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("lambdapool_project", "the Chalice project the lambdapool fixture serves (default: rootdir)")
    parser.addini(
        "lambdapool_fast_cold_starts",
        "skip the cold-start wait for what a fresh interpreter spends importing the app's libraries "
        "(lambdapool local --fast-cold-starts); faithful to Lambda (false) by default",
        type="bool",
        default=False,
    )
    parser.addini(
        "lambdapool_async_retry_delay_s",
        "the wait before retrying a failed asynchronous invocation (lambdapool local --async-retry-delay-s); "
        "Lambda's 60 s by default",
        default=str(ASYNC_RETRY_DELAY_S),
    )
    parser.addini(
        "lambdapool_gateway_timeout_s",
        "API Gateway's integration timeout on routes (lambdapool local --gateway-timeout-s); 29 s by default",
        default=str(API_GATEWAY_TIMEOUT_S),
    )
    parser.addini(
        "lambdapool_test_queries",
        "collect the test queries of projects (test_queries/<service>/<endpoint>.json beside app.py) as tests",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Put the project (the ``lambdapool_project`` ini option, else the rootdir, if it holds an ``app.py``) on
    ``sys.path``, as ``chalice local`` and Lambda do: tests import ``app`` and ``chalicelib`` under plain
    ``pytest`` as under ``python -m pytest``."""
    configured = config.getini("lambdapool_project")
    project = Path(config.rootpath, configured) if configured else Path(config.rootpath)
    if (project / "app.py").is_file() and str(project) not in sys.path:
        sys.path.insert(0, str(project))


@pytest.fixture
def lambdapool_project(request: pytest.FixtureRequest) -> Path:
    """The project the ``lambdapool`` fixture serves."""
    configured = request.config.getini("lambdapool_project")
    return Path(request.config.rootpath, configured) if configured else Path(request.config.rootpath)


class Emulators:
    """The session's emulators: one per project, started when a test first needs it, stopped at the end."""

    def __init__(self, config: pytest.Config):
        self._config = config
        self._started: dict[Path, tuple[EmulatorClient, str]] = {}

    def client(self, project: Path) -> EmulatorClient:
        """The emulator serving ``project`` (started now if it is not yet)."""
        project = project.resolve()
        started = self._started.get(project)
        if started is None:
            config = self._config
            state_dir = tempfile.mkdtemp(prefix="lambdapool-state-")
            emulator = Emulator(
                project,
                port=0,
                state_dir=state_dir,
                fast_cold_starts=bool(config.getini("lambdapool_fast_cold_starts")),
                async_retry_delay_s=float(config.getini("lambdapool_async_retry_delay_s")),
                gateway_timeout_s=float(config.getini("lambdapool_gateway_timeout_s")),
            )
            try:
                emulator.start()
            except BaseException:
                shutil.rmtree(state_dir, ignore_errors=True)
                raise
            emulator.serve_in_thread()
            started = self._started[project] = (EmulatorClient(emulator), state_dir)
        return started[0]

    def close(self) -> None:
        """Stop every emulator and remove its state. Safe to call twice."""
        started, self._started = self._started, {}
        for client, state_dir in started.values():
            try:
                client.emulator.close()
            finally:
                shutil.rmtree(state_dir, ignore_errors=True)


_EMULATORS = pytest.StashKey["Emulators"]()


def session_emulators(config: pytest.Config) -> Emulators:
    """The session's :class:`Emulators` (created at first use; stopped when the session ends)."""
    emulators = config.stash.get(_EMULATORS, None)
    if emulators is None:
        emulators = config.stash[_EMULATORS] = Emulators(config)
        config.add_cleanup(emulators.close)
    return emulators


@pytest.fixture(scope="session")
def lambdapool_emulators(request: pytest.FixtureRequest) -> Iterator[Emulators]:
    """The session's emulators (see :class:`Emulators`); what ``lambdapool`` takes its emulator from."""
    emulators = session_emulators(request.config)
    try:
        yield emulators
    finally:
        emulators.close()


@pytest.fixture
def lambdapool(lambdapool_project: Path, lambdapool_emulators: Emulators) -> EmulatorClient:
    """``lambdapool local`` for the project, reset for this test (see the module docstring). The ini options
    ``lambdapool_fast_cold_starts``, ``lambdapool_async_retry_delay_s`` and ``lambdapool_gateway_timeout_s``
    set what the command line flags of the same names set. The emulator was started with the session's
    environment: a variable a test sets later does not reach its pipelines."""
    client = lambdapool_emulators.client(lambdapool_project)
    client.emulator.reset()
    return client


@pytest.fixture
def lambdapool_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's ``mock_aws`` with dummy credentials and region: boto3 in the test never reaches AWS."""
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


# -- Dataiku's test queries as tests -------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A project's ``test_queries/<service>/<endpoint>.json`` (beside its ``app.py``) as a file of tests."""
    if file_path.suffix != ".json" or file_path.parent.parent.name != "test_queries":
        return None
    project = file_path.parent.parent.parent
    if not (project / "app.py").is_file() or not parent.config.getini("lambdapool_test_queries"):
        return None
    return TestQueryFile.from_parent(parent, path=file_path)


class TestQueryFailed(AssertionError):
    """A test query that did not pass: its outcome."""

    __test__ = False

    def __init__(self, outcome: QueryOutcome):
        super().__init__(outcome.reason)
        self.outcome = outcome


class TestQueryFile(pytest.File):
    """A test query file: one test per query."""

    __test__ = False

    def collect(self) -> Iterator[pytest.Item]:
        project = self.path.parent.parent.parent
        located = query_file_of(self.path, project)
        if located is None:
            return
        try:
            queries = load_file(self.path, *located)
        except TestQueryError as exc:
            raise self.CollectError(str(exc)) from None
        for query in queries:
            yield TestQueryItem.from_parent(self, name=query.name, query=query, project=project)


class TestQueryItem(pytest.Item):
    """One test query, played against the session's emulator of its project (reset first, as for the
    ``lambdapool`` fixture). A keyed service is called with its first key."""

    __test__ = False

    def __init__(self, *, query: TestQuery, project: Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.query = query
        self.project = project

    def runtest(self) -> None:
        client = session_emulators(self.config).client(self.project)
        client.emulator.reset()
        service = client.emulator.services.get(self.query.service)
        keys = service.api_keys if service is not None else ()
        outcome = play(self.query, client.url, {"Authorization": f"Bearer {keys[0]}"} if keys else None)
        if not outcome.passed:
            raise TestQueryFailed(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, TestQueryFailed):
            outcome = excinfo.value.outcome
            return (
                f"test query {self.query.name!r} of {self.query.where} ({self.path.name}): {outcome.reason}\n"
                f"q: {json.dumps(self.query.q)}\n"
                f"HTTP {outcome.status}: {json.dumps(outcome.body, default=str)[:2000]}"
            )
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"test query {self.query.where}: {self.query.name}"
