"""What a pipeline process holds: the fork server's preloads and the pipeline side, nothing host-side.

Every pipeline is forked from the fork server and inherits its ``sys.modules``. A Lambda execution
environment has the standard library, the runtime's boto3 and botocore, and the deployment package (here:
``chalice.app`` and lambdapool's model, which ``lambdapool config`` vendors). Whatever else the fork server
loads (Werkzeug, moto, prometheus-client, the emulator's HTTP layer) would be importable by user code
locally and missing on Lambda, and would be paid for in every emulated cold start. A real fork server and
real pipelines (an endpoint's and the API handler's) report their ``sys.modules`` before the app's code runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from lambdapool._deploy import runtime_files
from lambdapool.emulator import Emulator

from .conftest import APPS, Client

pytestmark = pytest.mark.integration

#: boto3, botocore and what they import: Lambda's Python runtimes include them.
AWS_SDK = {"boto3", "botocore", "jmespath", "dateutil", "urllib3", "s3transfer", "six"}
#: The interpreter's own: the main module (the fork server's), and setuptools' .pth hook that site runs in
#: every interpreter of an environment where setuptools is installed (nothing the emulator imports); and
#: ``app``, the module being imported (as Lambda's runtime imports the handler's module).
INTERPRETER = {"__main__", "_distutils_hack", "app"}
MODEL = {"lambdapool", *(f"lambdapool.{name.removesuffix('.py')}" for name in runtime_files() if name.endswith(".py"))}
PIPELINE_SIDE = ("lambdapool.emulator.pipelines",)


def not_allowed(modules: list[str]) -> list[str]:
    """The modules a pipeline must not hold before the app runs."""
    return [
        name
        for name in modules
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in AWS_SDK
        and name not in INTERPRETER
        and name not in MODEL
        and name not in {"chalice", "chalice.app", "lambdapool.emulator"}
        and not any(name == side or name.startswith(side + ".") for side in PIPELINE_SIDE)
    ]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Emulator(
        APPS / "boundary", port=0, aws="none", state_dir=tmp_path_factory.mktemp("state"), fast_cold_starts=True
    ) as running:
        running.serve_in_thread()
        yield Client(running)


def test_an_endpoints_pipeline_holds_only_the_standard_library_the_sdk_the_model_and_the_pipeline_side(
    emulator: Client,
) -> None:
    answer = emulator.run("probe", "modules", {})
    assert answer.status_code == 200, answer.text
    before = answer.json()["response"]["beforeInit"]

    assert "lambdapool.emulator.pipelines._worker" in before  # what the check reads is a real pipeline's
    assert not_allowed(before) == []
    assert not [name for name in before if name.split(".")[0] in {"werkzeug", "moto", "prometheus_client"}]


def test_the_api_handlers_pipeline_holds_no_host_side_library_either(emulator: Client) -> None:
    answer = emulator.session.get(f"{emulator.url}/modules", timeout=60)
    assert answer.status_code == 200, answer.text
    modules = answer.json()

    assert not_allowed(modules["beforeInit"]) == []
    # serving routes loads Chalice's local gateway in that pipeline alone, and still nothing of the host
    assert "chalice.local" in modules["now"]
    assert not [name for name in modules["now"] if name.split(".")[0] in {"werkzeug", "moto", "prometheus_client"}]


def test_setproctitle_names_the_pipeline_but_is_not_left_for_user_code_to_find(emulator: Client) -> None:
    answer = emulator.run("probe", "modules", {})
    now = answer.json()["response"]["now"]
    status = emulator.endpoint_status("probe", "modules")
    (process,) = status["pipelines"]["processes"][:1]
    with open(f"/proc/{process['pid']}/cmdline", "rb") as cmdline:
        title = cmdline.read().split(b"\0")[0].decode()

    assert title == "lambdapool: probe/modules #1"
    assert not [name for name in now if name.startswith("setproctitle")]
