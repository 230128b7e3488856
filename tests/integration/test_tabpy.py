"""TabPy's API, driven by TabPy's own client (the ``tabpy`` package, installed only for the tests): deploying,
querying, /evaluate, credentials, persistence, and deployed functions as endpoints in their own pools."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import requests
from tabpy.tabpy_tools.client import Client as TabPyClient
from tabpy.tabpy_tools.rest import ResponseError

from lambdapool.emulator import Emulator

from .conftest import APPS, Client, read_banner, wait_until

pytestmark = pytest.mark.integration

PROJECT = APPS / "tabpy_host"
USER, PASSWORD = "alice", "P@ss:w0rd"  # a ':' in it: TabPy's own server can never authenticate it
AUTH = (USER, PASSWORD)
TABPY_USER = Path(sys.executable).with_name("tabpy-user")


@pytest.fixture(autouse=True)
def by_value() -> Iterator[None]:
    """Functions of this module are pickled by value, as a notebook's are (the pipelines cannot import it)."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="module")
def pwd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A password file written by TabPy's own ``tabpy-user add``."""
    path = tmp_path_factory.mktemp("tabpy") / "passwords.txt"
    subprocess.run([str(TABPY_USER), "add", "-u", USER, "-p", PASSWORD, "-f", str(path)], check=True)
    return path


@pytest.fixture
def tabpy(start_emulator: Callable[..., Client], pwd_file: Path) -> Client:
    """An emulator that lets alice deploy."""
    return start_emulator(PROJECT, allow_deploy=True, pwd_file=pwd_file)


def client_of(emulator: Client, auth: tuple[str, str] | None = AUTH) -> TabPyClient:
    client = TabPyClient(emulator.url + "/")  # TabPy's client needs the trailing slash
    if auth is not None:
        client.set_credentials(*auth)
    return client


def add(x, y):  # type: ignore[no-untyped-def]
    """Adds x and y"""
    return x + y


def multiply(x, y):  # type: ignore[no-untyped-def]
    return x * y


def divide(x, y):  # type: ignore[no-untyped-def]
    return x / y


def wait_for_file(path):  # type: ignore[no-untyped-def]
    """Runs until ``path`` exists (the test's way of keeping a call running)."""
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


def post(emulator: Client, path: str, body: Any, auth: tuple[str, str] | None = AUTH) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(emulator.url + path, data=data, auth=auth, timeout=60)


# -- deploying with TabPy's client -------------------------------------------------------------------------


def test_deploy_query_redeploy_list_and_remove_with_tabpys_client(tabpy: Client) -> None:
    client = client_of(tabpy)
    client.deploy("add", add, "Adds two numbers")
    answer = client.query("add", 1, 2)
    assert answer["response"] == 3
    assert (answer["version"], answer["model"]) == (1, "add")
    assert client.query("add", x=2, y=5)["response"] == 7  # keyword arguments: {"data": {...}}

    client.deploy("add", multiply, "Multiplies", override=True)
    answer = client.query("add", 3, 4)
    assert (answer["response"], answer["version"]) == (12, 2)  # the new version serves from now on
    endpoints = client.get_endpoints()
    assert endpoints["add"].version == 2
    assert endpoints["add"].description == "Multiplies"
    assert client.get_status()["add"] == {"version": 2, "type": "model", "status": "LoadSuccessful", "last_error": None}
    record = requests.get(f"{tabpy.url}/endpoints/add", auth=AUTH, timeout=10).json()
    assert list(record) == [
        "description",
        "type",
        "version",
        "dependencies",
        "target",
        "creation_time",
        "last_modified_time",
        "schema",
        "is_public",
        "docstring",
    ]
    with pytest.raises(RuntimeError, match="already exists"):
        client.deploy("add", add)  # without override=True

    client.remove("add")
    assert client.get_status() == {}
    assert client.get_endpoints() == {}
    with pytest.raises(ResponseError) as raised:
        client.query("add", 1, 2)
    assert raised.value.status_code == 404  # a removed function stops answering at once (TabPy's does not)
    gone = post(tabpy, "/query/add", {"data": [1, 2]})
    assert gone.json() == {"message": "UnknownURI", "info": "Endpoint 'add' does not exist"}
    wait_until(lambda: "add" not in tabpy.status()["services"]["tabpy"]["endpoints"])
    with pytest.raises(RuntimeError, match="does not exist"):
        client.remove("add")


def test_deployed_functions_are_endpoints(tabpy: Client) -> None:
    client = client_of(tabpy)
    client.deploy("add", add, "Adds two numbers")
    client.deploy("two words", multiply)  # TabPy allows spaces: the endpoint id has an underscore

    run = requests.post(f"{tabpy.url}/public/api/v1/tabpy/add/run", json={"x": 2, "y": 3}, auth=AUTH, timeout=30)
    assert run.status_code == 200, run.text
    assert run.json()["response"] == 5
    assert run.json()["apiContext"]["serviceId"] == "tabpy"
    assert (
        requests.post(f"{tabpy.url}/public/api/v1/tabpy/add/run", json={"x": 2, "y": 3}, timeout=30).status_code == 401
    )
    assert client.query("two words", 3, 4)["response"] == 12

    status = tabpy.status()["services"]["tabpy"]
    assert status["authenticated"] is True
    assert set(status["endpoints"]) == {"add", "two_words"}
    assert status["endpoints"]["add"]["pool"]["ceil"] == 2  # config/tabpy.json
    assert status["endpoints"]["add"]["counters"]["calls"] >= 1
    listed = requests.get(f"{tabpy.url}/__lambdapool__/functions", timeout=10).json()["functions"]
    add_listed = next(f for f in listed if (f["serviceId"], f["endpointId"]) == ("tabpy", "add"))
    assert add_listed["description"] == "Adds two numbers"
    assert add_listed["timeoutS"] == 30 and add_listed["acceptsOtherParameters"] is True
    metrics = requests.get(f"{tabpy.url}/metrics", timeout=10).text
    assert 'lambdapool_calls_total{endpoint="add",service="tabpy"}' in metrics

    submitted = requests.post(
        f"{tabpy.url}/public/api/v1/tabpy/add/submit", json={"x": 1, "y": 1}, auth=AUTH, timeout=30
    )
    assert submitted.status_code == 202
    task = wait_until(
        lambda: (
            (
                t := requests.get(
                    f"{tabpy.url}/public/api/v1/tasks/{submitted.json()['taskId']}", auth=AUTH, timeout=10
                ).json()
            )["status"]
            == "DONE"
            and t
        )
    )
    assert task["response"] == 2


def test_a_slow_deployed_function_blocks_neither_the_server_nor_other_endpoints(tabpy: Client, tmp_path: Path) -> None:
    client = client_of(tabpy)
    client.deploy("slow", wait_for_file)
    client.deploy("add", add)
    release = tmp_path / "release"
    answers: list[Any] = []
    slow = threading.Thread(target=lambda: answers.append(client.query("slow", str(release))))
    slow.start()
    try:
        wait_until(lambda: tabpy.endpoint_status("tabpy", "slow")["pipelines"]["busy"] == 1)
        info = requests.get(f"{tabpy.url}/info", auth=AUTH, timeout=10)
        assert info.status_code == 200
        assert client.query("add", 1, 2)["response"] == 3
        assert tabpy.run("other", "echo", {"text": "hi"}).json()["response"] == "hi"
        assert slow.is_alive() and not answers  # all of that while the slow call still runs
    finally:
        release.touch()
        slow.join(timeout=60)
    assert answers[0]["response"] == "released"


def test_deployed_functions_and_versions_survive_a_restart(
    start_emulator: Callable[..., Client], pwd_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = start_emulator(PROJECT, allow_deploy=True, pwd_file=pwd_file, state_dir=state)
    client = client_of(first)
    client.deploy("add", add)
    client.deploy("add", multiply, override=True)
    first.emulator.close()

    second = start_emulator(PROJECT, pwd_file=pwd_file, state_dir=state)  # deploying off: they still serve
    client = client_of(second)
    wait_until(lambda: client.get_status().get("add", {}).get("status") == "LoadSuccessful")
    assert client.get_status()["add"]["version"] == 2
    answer = client.query("add", 3, 4)
    assert (answer["response"], answer["version"]) == (12, 2)


def test_a_reload_of_the_app_leaves_deployed_functions_serving(tabpy: Client) -> None:
    client = client_of(tabpy)
    client.deploy("add", add)
    before = tabpy.endpoint_status("tabpy", "add")["pipelines"]["processes"][0]["pid"]
    assert tabpy.emulator.reload(["app.py"])
    assert client.query("add", 1, 2)["response"] == 3
    assert tabpy.endpoint_status("tabpy", "add")["pipelines"]["processes"][0]["pid"] == before


def test_a_pickle_that_cannot_load_is_load_failed(tabpy: Client) -> None:
    staged = requests.put(f"{tabpy.url}/endpoints/broken/archive", data=b"garbage\n", auth=AUTH, timeout=10)
    assert staged.status_code == 200, staged.text
    body = {"name": "broken", "type": "model", "description": "", "src_path": staged.json()["path"]}
    created = post(tabpy, "/endpoints", body)
    assert created.status_code == 201  # as TabPy: registered, then its load fails
    status = requests.get(f"{tabpy.url}/status", auth=AUTH, timeout=10).json()["broken"]
    assert status["status"] == "LoadFailed"
    assert status["last_error"].startswith("Load failed: ")
    failed = post(tabpy, "/query/broken", {"data": [1]})
    assert failed.status_code == 500
    assert failed.json() == {
        "message": "Error querying function 'broken'",
        "info": {
            "uri": "broken",
            "error": "There is no query object associated to the endpoint: broken",
            "type": "QueryFailed",
        },
    }


# -- /query and /evaluate ----------------------------------------------------------------------------------


def test_query_errors_are_tabpys(tabpy: Client) -> None:
    client = client_of(tabpy)
    client.deploy("divide", divide)
    assert post(tabpy, "/query/nope", {"data": [1]}).json() == {
        "message": "UnknownURI",
        "info": "Endpoint 'nope' does not exist",
    }
    failed = post(tabpy, "/query/divide", {"data": [1, 0]})
    assert failed.status_code == 500
    assert failed.json() == {
        "message": "Error querying function 'divide'",
        "info": {"uri": "divide", "error": "ZeroDivisionError : division by zero", "type": "QueryFailed"},
    }
    missing = post(tabpy, "/query/divide", {"x": [1, 0]})
    assert missing.status_code == 400
    assert missing.json() == {
        "message": 'RuntimeError : Input data must be a dictionary with a key called "data"',
        "info": {},
    }
    assert post(tabpy, "/query/divide", "not json").status_code == 400
    wrong = post(tabpy, "/query/divide", {"data": 5})
    assert wrong.status_code == 500 and "Query parameter needs to be a dictionary or a list" in wrong.text
    by_get = requests.get(f"{tabpy.url}/query/divide", data=json.dumps({"data": [6, 3]}), auth=AUTH, timeout=10)
    assert by_get.json()["response"] == 2.0  # TabPy's GET reads the body too
    nan = post(tabpy, "/query/divide", {"data": [float("inf"), 1]})  # inf / 1: infinity, answered as null
    assert nan.status_code == 200 and nan.json()["response"] is None


def test_evaluate_runs_scripts_with_tabpy_query(tabpy: Client) -> None:
    client_of(tabpy).deploy("add", add)
    plain = post(tabpy, "/evaluate", {"script": "return _arg1 + _arg2", "data": {"_arg1": 1, "_arg2": 2}})
    assert (plain.status_code, plain.json()) == (200, 3)
    queried = post(
        tabpy,
        "/evaluate",
        {"script": "return tabpy.query('add', _arg1, _arg2)['response']", "data": {"_arg1": [1], "_arg2": [2]}},
    )
    assert (queried.status_code, queried.json()) == (200, [1, 2])
    several_lines = "total = 0\nfor value in _arg1:\n    total += value\nreturn total"
    assert post(tabpy, "/evaluate", {"script": several_lines, "data": {"_arg1": [1, 2, 3]}}).json() == 6
    assert post(tabpy, "/evaluate", {"script": "return None", "data": {}}).text == "null"
    unknown = post(tabpy, "/evaluate", {"script": "return tabpy.query('nope', 1)['response']", "data": {}})
    assert unknown.status_code == 404
    assert unknown.json()["info"].startswith("The endpoint you're trying to query did not respond.")


def test_evaluate_errors_are_tabpys(tabpy: Client) -> None:
    def evaluate(body: Any) -> tuple[int, Any]:
        answer = post(tabpy, "/evaluate", body)
        return answer.status_code, answer.json()

    assert evaluate({"data": {"_arg1": 1}}) == (400, {"message": "Script is empty.", "info": {}})
    assert evaluate({"script": "return 1", "data": [1]}) == (
        400,
        {"message": "Script parameters need to be provided as a dictionary.", "info": {}},
    )
    assert evaluate({"script": "return 1", "data": {"_arg2": 1}}) == (
        400,
        {"message": "Variables names should follow the format _arg1, _arg2, _argN", "info": {}},
    )
    assert evaluate({"script": "return 1 / 0", "data": {}}) == (
        500,
        {"message": "Error processing script", "info": "ZeroDivisionError : division by zero"},
    )
    status, body = evaluate({"script": "return (", "data": {}})
    assert status == 500 and body["info"].startswith("SyntaxError : ")
    status, body = evaluate("{not json")
    assert status == 500 and body["info"].startswith("JSONDecodeError : ")


def test_a_script_past_the_evaluate_timeout_is_408_and_the_next_one_runs(tabpy: Client) -> None:
    looping = post(tabpy, "/evaluate", {"script": "while True:\n    pass", "data": {}})
    assert looping.status_code == 408
    assert looping.json() == {"message": "User defined script timed out. Timeout is set to 2 s.", "info": {}}
    assert post(tabpy, "/evaluate", {"script": "return _arg1 * 2", "data": {"_arg1": 21}}).json() == 42


# -- security ---------------------------------------------------------------------------------------------


TABPY_ROUTES = [
    ("GET", "/info"),
    ("GET", "/status"),
    ("GET", "/endpoints"),
    ("GET", "/endpoints/add"),
    ("POST", "/endpoints"),
    ("PUT", "/endpoints/add"),
    ("DELETE", "/endpoints/add"),
    ("GET", "/configurations/endpoint_upload_destination"),
    ("POST", "/query/add"),
    ("POST", "/evaluate"),
]


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("mallory", PASSWORD), (USER, "P@ss")])
def test_every_tabpy_route_needs_a_users_credentials(tabpy: Client, auth: tuple[str, str] | None) -> None:
    for method, path in TABPY_ROUTES:
        answer = requests.request(method, tabpy.url + path, data=b"{}", auth=auth, timeout=10)
        assert answer.status_code == 401, (method, path)
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'
        assert answer.json() == {"message": "Invalid credentials provided.", "info": "Unauthorized request."}
    with pytest.raises(ResponseError):
        client_of(tabpy, auth).get_status()
    assert requests.get(f"{tabpy.url}/info", auth=(USER.upper(), PASSWORD), timeout=10).status_code == 200


def test_without_allow_deploy_deploying_and_evaluate_are_refused(
    start_emulator: Callable[..., Client], pwd_file: Path
) -> None:
    emulator = start_emulator(PROJECT, pwd_file=pwd_file)
    client = client_of(emulator)
    with pytest.raises(ResponseError) as raised:
        client.deploy("add", add)
    assert raised.value.status_code == 404
    refused = post(emulator, "/evaluate", {"script": "return 1", "data": {}})
    assert refused.status_code == 404
    assert refused.json() == {
        "message": "Ad-hoc scripts have been disabled on this analytics extension, please contact your administrator.",
        "info": {},
    }
    staged = requests.put(f"{emulator.url}/endpoints/add/archive", data=b"x", auth=AUTH, timeout=10)
    assert staged.status_code == 404
    info = requests.get(f"{emulator.url}/info", auth=AUTH, timeout=10).json()
    assert info["versions"]["v1"]["features"]["evaluate_enabled"] is False
    assert info["versions"]["v1"]["features"]["authentication"]["required"] is True


def test_credentials_sent_to_a_server_without_a_password_file_get_406(start_emulator: Callable[..., Client]) -> None:
    emulator = start_emulator(PROJECT)
    answer = requests.get(f"{emulator.url}/info", auth=AUTH, timeout=10)
    assert answer.status_code == 406
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'
    assert answer.json() == {
        "message": "Username or password provided when authentication not available.",
        "info": "Not Acceptable",
    }
    info = requests.get(f"{emulator.url}/info", timeout=10).json()
    assert "authentication" not in info["versions"]["v1"]["features"]
    assert post(emulator, "/evaluate", {"script": "return 1"}, auth=None).status_code == 404


def test_allow_deploy_needs_a_password_file(start_emulator: Callable[..., Client]) -> None:
    with pytest.raises(ValueError, match="--allow-deploy needs --pwd-file"):
        start_emulator(PROJECT, allow_deploy=True)


def local_command(*options: str) -> list[str]:
    """``lambdapool local`` on the test project, on a free port, without a local AWS."""
    return [sys.executable, "-m", "lambdapool.cli", "local", str(PROJECT), "--port", "0", "--aws", "none", *options]


def test_a_wrong_password_file_line_is_a_clear_startup_error(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    bad = tmp_path / "passwords.txt"
    bad.write_text("alice 0123abcd\nbob has two spaces\n")
    process = spawn(
        local_command("--allow-deploy", "--pwd-file", str(bad)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"password file {bad}, line 2" in err
    assert "'bob has two spaces'" in err


def test_lambdapool_local_serves_tabpy_with_a_tabpy_user_file(
    spawn: Callable[..., subprocess.Popen[str]], pwd_file: Path, tmp_path: Path
) -> None:
    process = spawn(
        local_command(
            "--state-dir", str(tmp_path / "state"), "--fast-cold-starts", "--allow-deploy", "--pwd-file", str(pwd_file)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _, url, banner = read_banner(process)
    assert any(line.startswith("TabPy API: ") and "deploy and /evaluate on" in line for line in banner), banner
    client = TabPyClient(url + "/")
    client.set_credentials(*AUTH)
    client.deploy("add", add)
    assert client.query("add", 1, 2)["response"] == 3


# -- deploying over HTTP -----------------------------------------------------------------------------------


def test_a_client_sharing_no_filesystem_deploys_over_http(tabpy: Client, tmp_path: Path) -> None:
    """The deploying process has its own working and temporary directories and writes nothing the server
    reads: the pickle travels in ``PUT /endpoints/{name}/archive``."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tmp").mkdir(parents=True)
    script = textwrap.dedent(
        f"""
        from lambdapool.tabpy import deploy, query

        def cube(x):
            "Cubes x"
            return x ** 3

        record = deploy({tabpy.url!r}, "cube", cube, auth={AUTH!r})
        assert record["version"] == 1, record
        record = deploy({tabpy.url!r}, "cube", lambda x: -x, "negates", override=True, auth={AUTH!r})
        assert record["version"] == 2, record
        print(query({tabpy.url!r}, "cube", 3, auth={AUTH!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(elsewhere / "tmp"), "HOME": str(elsewhere)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-3"
    assert client_of(tabpy).query("cube", 2)["response"] == -2
    staging = Path(
        requests.get(f"{tabpy.url}/configurations/endpoint_upload_destination", auth=AUTH, timeout=10).json()["path"]
    )
    assert not any(staging.rglob("pickle_archive"))  # registered: kept in the state directory, not left staged


def test_a_src_path_outside_the_upload_destination_is_refused(tabpy: Client, tmp_path: Path) -> None:
    (tmp_path / "add").mkdir()
    (tmp_path / "add" / "pickle_archive").write_bytes(cloudpickle.dumps(add))
    refused = post(tabpy, "/endpoints", {"name": "add", "type": "model", "src_path": str(tmp_path / "add")})
    assert refused.status_code == 400
    assert refused.json()["message"] == "Invalid source path for endpoint add"


def test_management_errors_are_tabpys(tabpy: Client) -> None:
    assert post(tabpy, "/endpoints", b"").json() == {"message": "Input body cannot be empty", "info": {}}
    assert post(tabpy, "/endpoints", b"{nope").json()["message"] == "Failed to decode input body"
    assert post(tabpy, "/endpoints", {"type": "model"}).json() == {
        "message": "name is required to add an endpoint.",
        "info": {},
    }
    assert post(tabpy, "/endpoints", {"name": "a/b?", "type": "model"}).json()["message"] == (
        "endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces."
    )
    assert post(tabpy, "/endpoints", {"name": "x", "type": "model"}).json() == {
        "message": "src_path is required to add/update an endpoint.",
        "info": {},
    }
    put = requests.put(f"{tabpy.url}/endpoints/nope", data=json.dumps({"type": "model"}), auth=AUTH, timeout=10)
    assert (put.status_code, put.json()) == (404, {"message": "endpoint nope does not exist.", "info": {}})
    delete = requests.delete(f"{tabpy.url}/endpoints/nope", auth=AUTH, timeout=10)
    assert (delete.status_code, delete.json()) == (404, {"message": "endpoint nope does not exist.", "info": {}})
    get = requests.get(f"{tabpy.url}/endpoints/nope", auth=AUTH, timeout=10)
    assert (get.status_code, get.json()) == (404, {"message": "Unknown endpoint", "info": "Endpoint nope is not found"})


def test_an_app_cannot_declare_the_tabpy_service(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from chalice import Chalice\nfrom lambdapool import Service\nfrom lambdapool.chalice import mount\n"
        "app = Chalice(app_name='clash')\nsvc = Service('tabpy')\n\n@svc.function()\ndef f() -> int:\n    return 1\n\n"
        "mount(app, svc)\n"
    )
    from lambdapool._errors import AppLoadError

    emulator = Emulator(tmp_path, port=0, aws="none", state_dir=tmp_path / "state")
    with pytest.raises(AppLoadError, match="reserved"):
        emulator.start()
    emulator.close()


def test_status_says_load_in_progress_until_the_function_loaded(
    start_emulator: Callable[..., Client], pwd_file: Path
) -> None:
    emulator = start_emulator(PROJECT, allow_deploy=True, pwd_file=pwd_file, cold_start_delay_ms=1500)
    client = client_of(emulator)
    seen: list[str] = []
    deploying = threading.Thread(target=client.deploy, args=("add", add))
    deploying.start()
    try:
        wait_until(
            lambda: seen.append(client.get_status().get("add", {}).get("status", "")) or "LoadInProgress" in seen
        )
    finally:
        deploying.join(timeout=60)
    assert client.get_status()["add"]["status"] == "LoadSuccessful"
    assert client.query("add", 1, 2)["response"] == 3


def test_hostile_requests_get_tabpy_answers(tabpy: Client) -> None:
    deep = b"[" * 100_000
    assert post(tabpy, "/endpoints", deep).json()["message"] == "Failed to decode input body"
    assert post(tabpy, "/query/add", deep).status_code == 400
    assert post(tabpy, "/evaluate", deep).json()["message"] == "Error processing script"
    for version in ("%C2%B2", "9" * 300, "0", "-1"):
        answer = requests.put(f"{tabpy.url}/endpoints/x/archive?version={version}", data=b"x", auth=AUTH, timeout=10)
        assert answer.status_code == 400, version
        assert answer.json()["message"] == "version must be a whole number from 1"
    long_name = requests.put(f"{tabpy.url}/endpoints/{'n' * 300}/archive", data=b"x", auth=AUTH, timeout=10)
    assert (long_name.status_code, long_name.json()["message"]) == (
        400,
        "endpoint name can have at most 128 characters.",
    )
    too_big = post(tabpy, "/endpoints", b" " * (2**20 + 1))
    assert too_big.status_code == 413
    assert too_big.json() == {
        "message": f"Request with size {2**20 + 1} exceeded limit of {2**20} (bytes).",
        "info": "Request Entity Too Large",
    }


def test_a_registration_reads_only_its_own_upload(tabpy: Client) -> None:
    victim = requests.put(f"{tabpy.url}/endpoints/victim/archive", data=cloudpickle.dumps(add), auth=AUTH, timeout=10)
    staging = Path(victim.json()["path"]).parents[2]
    (staging / "pickle_archive").write_bytes(b"x")
    for src_path in (str(staging), victim.json()["path"]):
        refused = post(tabpy, "/endpoints", {"name": "root", "type": "model", "src_path": src_path})
        assert refused.status_code == 400
        assert refused.json()["message"] == "Invalid source path for endpoint root"
    assert Path(victim.json()["path"], "pickle_archive").is_file()  # another name's upload is left alone
    again = requests.put(f"{tabpy.url}/endpoints/victim/archive?version=3", data=b"y", auth=AUTH, timeout=10)
    assert not Path(victim.json()["path"]).exists()  # one upload per name waits to be registered
    assert Path(again.json()["path"], "pickle_archive").read_bytes() == b"y"


def test_a_query_with_a_method_passes_it_on_as_tabpy_does(tabpy: Client) -> None:
    client_of(tabpy).deploy("add", add)
    answer = post(tabpy, "/query/add", {"data": [1, 2], "method": "query"})
    assert answer.status_code == 500
    assert "unexpected keyword argument 'data'" in answer.json()["info"]["error"]
