"""``lambdapool config``: Lambda settings into .chalice/config.json, nothing else touched, idempotent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lambdapool._deploy import runtime_files

from .conftest import SAMPLE_APP

pytestmark = pytest.mark.integration

UNRELATED = {
    "version": "2.0",
    "app_name": "sample",
    "environment_variables": {"SHARED": "1"},
    "stages": {
        "dev": {
            "api_gateway_stage": "api",
            "autogen_policy": False,
            "lambda_functions": {
                "demo-add": {"environment_variables": {"ADD": "yes"}, "lambda_timeout": 3},
                "someone-elses": {"lambda_memory_size": 1024},
            },
        },
        "prod": {"api_gateway_stage": "v1", "lambda_memory_size": 256},
    },
}


def run_config(project: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "config", str(project), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "sample"
    shutil.copytree(SAMPLE_APP, project, ignore=shutil.ignore_patterns("deployments", "vendor", "__pycache__"))
    (project / ".chalice" / "config.json").write_text(json.dumps(UNRELATED, indent=4))
    return project


def test_config_writes_each_function_and_keeps_everything_else(project: Path) -> None:
    out = run_config(project)
    assert "stages.dev.lambda_functions.demo-add.lambda_timeout: 3 -> 60" in out
    assert "stages.dev.lambda_functions.demo-slow.reserved_concurrency: unset -> 2" in out
    # complaint_types keeps the 60 s default: more than API Gateway lets a route run.
    assert "warning: 311/complaint_types has timeout_s=60, but API Gateway ends every route at 29 s" in out
    assert "warning: 311/predict" not in out  # timeout_s=10
    config = json.loads((project / ".chalice" / "config.json").read_text())
    functions = config["stages"]["dev"]["lambda_functions"]
    assert functions["demo-add"] == {
        "environment_variables": {"ADD": "yes"},
        "lambda_timeout": 60,
        "reserved_concurrency": 8,
        "lambda_memory_size": 128,
    }
    assert functions["demo-api_py_function"]["reserved_concurrency"] == 4  # from the pool file
    assert functions["someone-elses"] == {"lambda_memory_size": 1024}
    assert config["stages"]["prod"] == UNRELATED["stages"]["prod"]
    assert config["environment_variables"] == {"SHARED": "1"}
    assert config["stages"]["dev"]["autogen_policy"] is False
    assert sorted(path.name for path in (project / "vendor" / "lambdapool").iterdir()) == runtime_files()


def test_config_is_idempotent(project: Path) -> None:
    run_config(project)
    first = (project / ".chalice" / "config.json").read_bytes()
    out = run_config(project)
    assert "is up to date for stage dev" in out
    assert (project / ".chalice" / "config.json").read_bytes() == first


def test_provisioned_opts_the_stage_in_and_names_the_deploys(project: Path) -> None:
    out = run_config(project, "--stage", "prod", "--provisioned")
    config = json.loads((project / ".chalice" / "config.json").read_text())
    assert config["stages"]["prod"]["environment_variables"]["LAMBDAPOOL_FUNCTION_QUALIFIER"] == "live"
    assert config["stages"]["prod"]["lambda_functions"]["311-predict"]["lambda_memory_size"] == 512
    assert "FunctionName=sample-prod-311-predict Floor=1" in out
    assert "sample-prod-demo-api_py_function" not in out  # floor 0: nothing to provision


def test_an_app_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("raise RuntimeError('broken on purpose')\n")
    result = subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "config", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "broken on purpose" in result.stderr


def test_config_writes_the_templates_a_stage_needs_into_the_project(project: Path) -> None:
    out = run_config(project, "--stage", "prod", "--provisioned")

    assert "infra/task-bucket.yaml: written" in out and "infra/provisioned-concurrency.yaml: written" in out
    shipped = Path(__import__("lambdapool").__file__).parent / "infra"
    for name in ("task-bucket.yaml", "provisioned-concurrency.yaml"):
        assert (project / "infra" / name).read_bytes() == (shipped / name).read_bytes()
    (project / "infra" / "task-bucket.yaml").write_text("# edited by the user\n")
    assert ": written" not in run_config(project, "--stage", "prod", "--provisioned")
    assert (project / "infra" / "task-bucket.yaml").read_text() == "# edited by the user\n"  # kept as edited


def test_the_infra_templates_pass_cfn_lint() -> None:
    templates = sorted((Path(__import__("lambdapool").__file__).parent / "infra").glob("*.yaml"))
    assert [path.name for path in templates] == ["provisioned-concurrency.yaml", "task-bucket.yaml"]
    cfn_lint = Path(sys.executable).with_name("cfn-lint")  # the console script cfn-lint installs
    result = subprocess.run([str(cfn_lint), *map(str, templates)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
