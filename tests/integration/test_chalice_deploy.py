"""``lambdapool config`` then ``chalice deploy`` of the sample app against moto's server, and the package
Chalice built, run the way Lambda runs it.

Real parts throughout: moto's server on a free port, Chalice's own deployer and packager, the emulator on
a real port. The one bridge (moto's API Gateway import wants OpenAPI 3) is in ``moto_aws.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambdapool._deploy import runtime_files

from ..lambda_events import api_gateway_event
from .conftest import SAMPLE_APP
from .moto_aws import moto_server

pytestmark = pytest.mark.integration

CHALICE = str(Path(sys.executable).with_name("chalice"))
#: What the Lambda Python runtime provides besides the package: boto3 and its dependencies.
LAMBDA_RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

EXPECTED = {  # function: (reserved concurrency = ceil, timeout_s, memory_mb), after pool files
    "311-predict": (8, 10, 512),
    "311-collector": (8, 60, 128),
    "311-medians": (8, 60, 128),
    "311-complaint_types": (8, 60, 128),
    "demo-add": (8, 60, 128),
    "demo-api_py_function": (4, 60, 128),
    "demo-divide": (8, 60, 128),
    "demo-slow": (2, 5, 128),
    "private-whoami": (8, 60, 128),
}


def aws(url: str, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory):
    """The sample project configured and deployed to a moto server: yields (project dir, moto URL)."""
    project = tmp_path_factory.mktemp("deploy") / "sample"
    shutil.copytree(SAMPLE_APP, project, ignore=shutil.ignore_patterns("deployments", "vendor", "__pycache__"))
    subprocess.run([sys.executable, "-m", "lambdapool.cli", "config", str(project)], check=True, capture_output=True)
    with moto_server() as url:
        for bucket in ("sample-311-raw", "sample-311-models"):  # S3 triggers need their bucket to exist
            aws(url, "s3").create_bucket(Bucket=bucket)
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        result = subprocess.run(
            [CHALICE, "deploy", "--stage", "dev"], cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield project, url


def test_every_endpoint_is_a_lambda_function_with_its_pool_settings(deployed) -> None:
    _, url = deployed
    client = aws(url, "lambda")
    names = {function["FunctionName"] for function in client.list_functions()["Functions"]}
    assert names == {f"sample-dev-{name}" for name in EXPECTED} | {"sample-dev"}
    for name, (ceil, timeout_s, memory_mb) in EXPECTED.items():
        configuration = client.get_function_configuration(FunctionName=f"sample-dev-{name}")
        assert (configuration["Timeout"], configuration["MemorySize"]) == (timeout_s, memory_mb), name
        concurrency = client.get_function_concurrency(FunctionName=f"sample-dev-{name}")
        assert concurrency["ReservedConcurrentExecutions"] == ceil, name


def test_the_rest_api_has_the_run_routes(deployed) -> None:
    _, url = deployed
    client = aws(url, "apigateway")
    (api,) = client.get_rest_apis()["items"]
    resources = client.get_resources(restApiId=api["id"], limit=500)["items"]
    routes = {(resource["path"], method) for resource in resources for method in resource.get("resourceMethods", {})}
    for name in set(EXPECTED) - {"311-collector", "311-medians"}:  # triggers have no route
        service, endpoint = name.split("-", 1)
        assert (f"/public/api/v1/{service}/{endpoint}/run", "POST") in routes
    assert not any("collector" in path or "medians" in path for path, _ in routes)


def test_the_schedule_is_an_eventbridge_rule_on_the_collector(deployed) -> None:
    _, url = deployed
    events = aws(url, "events")
    (rule,) = [rule for rule in events.list_rules()["Rules"] if rule.get("ScheduleExpression")]
    assert rule["ScheduleExpression"] == "rate(1 day)"
    assert rule["Name"] == "sample-dev-311-collector-event"  # the rule the emulator's scheduled events name
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"].endswith(":function:sample-dev-311-collector")


def test_the_s3_trigger_is_a_bucket_notification_on_the_medians_job(deployed) -> None:
    _, url = deployed
    notification = aws(url, "s3").get_bucket_notification_configuration(Bucket="sample-311-raw")
    (config,) = notification["LambdaFunctionConfigurations"]
    assert config["LambdaFunctionArn"].endswith(":function:sample-dev-311-medians")
    assert config["Events"] == ["s3:ObjectCreated:*"]
    rules = {rule["Name"].lower(): rule["Value"] for rule in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "raw/", "suffix": ".json"}


def test_the_deployment_package_holds_the_runtime_only(deployed) -> None:
    project, _ = deployed
    (package,) = (project / ".chalice" / "deployments").glob("*.zip")
    names = zipfile.ZipFile(package).namelist()
    assert sorted(name.split("/", 1)[1] for name in names if name.startswith("lambdapool/")) == runtime_files()
    assert "chalice/app.py" in names and "app.py" in names and "models/medians.json" in names  # a managed folder
    check = subprocess.run(
        [sys.executable, "-m", "lambdapool.cli", "check-package", str(package)], capture_output=True, text=True
    )
    assert check.returncode == 0 and "MB zipped (limit 50 MB)" in check.stdout


HANDLER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[1])

    class Context:  # the fields of Lambda's context object that the handlers read
        function_name = "sample-dev"
        memory_limit_in_mb = 128
        aws_request_id = "request-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sample-dev"
        def get_remaining_time_in_millis(self):
            return 30_000

    import app
    calls = json.loads(sys.stdin.read())
    answers = [getattr(app, handler)(event, Context()) for handler, event in calls]
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("lambdapool", "chalice", "werkzeug"))
    print(json.dumps({"answers": answers, "modules": loaded}))
    """
)


def run_package(package_dir: Path, runtime_dir: Path, calls: list[Any], env: dict[str, str]) -> dict[str, Any]:
    """Run handlers in a fresh interpreter whose only imports are the package and Lambda's runtime libraries."""
    result = subprocess.run(
        [sys.executable, "-S", "-c", HANDLER_SCRIPT, json.dumps([str(package_dir), str(runtime_dir)])],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        cwd=package_dir,
        env={"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(package_dir), **env},  # as Lambda sets it
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def unpacked(deployed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The deployment zip unpacked, and a directory with what Lambda's Python runtime provides."""
    project, _ = deployed
    (package,) = (project / ".chalice" / "deployments").glob("*.zip")
    package_dir = tmp_path_factory.mktemp("package")
    zipfile.ZipFile(package).extractall(package_dir)
    runtime_dir = tmp_path_factory.mktemp("lambda-runtime")
    for name in LAMBDA_RUNTIME_MODULES:
        module = __import__(name)
        source = Path(module.__file__)
        source = source.parent if source.name == "__init__.py" else source
        (runtime_dir / source.name).symlink_to(source)
    return package_dir, runtime_dir


def test_each_endpoint_handler_in_the_package_runs_its_function(unpacked) -> None:
    package_dir, runtime_dir = unpacked
    out = run_package(
        package_dir,
        runtime_dir,
        [
            ["lambdapool_demo__add", {"x": 2, "y": 40}],
            ["lambdapool_311__predict", {"complaint_type": "appliance"}],
            ["lambdapool_311__complaint_types", {}],
        ],
        {"AWS_LAMBDA_FUNCTION_NAME": "sample-dev-demo-add"},
    )
    assert out["answers"][0] == 42
    assert out["answers"][1]["estimated_time"] == 63.53
    assert out["answers"][2]["count"] == 9
    # Runtime purity: the model, the adapter and chalice.app, nothing of the emulator or Chalice's CLI.
    allowed = {"chalice", "chalice.app", "lambdapool", "lambdapool.chalice"}
    allowed |= {f"lambdapool.{name[:-3]}" for name in runtime_files() if name.endswith(".py") and name != "__init__.py"}
    assert set(out["modules"]) <= allowed


def test_the_schedule_and_s3_handlers_in_the_package_run_the_data_cycle(unpacked, deployed) -> None:
    package_dir, runtime_dir = unpacked
    _, url = deployed
    scheduled = {
        "version": "0",
        "id": "event-1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T06:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/sample-dev-311-collector-event"],
        "detail": {},
    }
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "sample-dev-311-collector",
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    (collected,) = run_package(package_dir, runtime_dir, [["lambdapool_311__collector", scheduled]], env)["answers"]
    assert collected == {"bucket": "sample-311-raw", "key": "raw/2026-11-21.json", "count": 500}
    head = aws(url, "s3").head_object(Bucket="sample-311-raw", Key="raw/2026-11-21.json")
    put_event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-22T06:00:01.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "sample-dev-311-medians",
                    "bucket": {"name": "sample-311-raw", "arn": "arn:aws:s3:::sample-311-raw"},
                    "object": {"key": "raw/2026-11-21.json", "size": head["ContentLength"], "eTag": head["ETag"]},
                },
            }
        ]
    }
    (computed,) = run_package(package_dir, runtime_dir, [["lambdapool_311__medians", put_event]], env)["answers"]
    assert computed == {"bucket": "sample-311-models", "key": "model.json", "types": 9, "source": "raw/2026-11-21.json"}
    model = json.loads(aws(url, "s3").get_object(Bucket="sample-311-models", Key="model.json")["Body"].read())
    assert set(model) == {
        "appliance",
        "blocked driveway",
        "dirty conditions",
        "heat/hot water",
        "illegal parking",
        "noise - residential",
        "plumbing",
        "street condition",
        "water system",
    }
    assert all(value > 0 for value in model.values())


def test_the_api_handler_in_the_package_forwards_to_a_running_emulator(unpacked, deployed, start_emulator) -> None:
    package_dir, runtime_dir = unpacked
    project, _ = deployed
    emulator = start_emulator(project)
    out = run_package(
        package_dir,
        runtime_dir,
        [
            ["app", api_gateway_event("/public/api/v1/demo/add/run", {"x": 1, "y": 2})],
            ["app", api_gateway_event("/public/api/v1/demo/divide/run", {"x": 1, "y": 0})],
            ["app", api_gateway_event("/public/api/v1/demo/add/run", {"x": 1})],
        ],
        {
            "AWS_LAMBDA_FUNCTION_NAME": "sample-dev",  # Chalice's API handler
            "AWS_ENDPOINT_URL": emulator.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    ok, raised, bad = out["answers"]
    assert ok["statusCode"] == 200
    body = json.loads(ok["body"])
    assert body["response"] == 3 and body["apiContext"]["pipelineId"] == "sample-dev-demo-add"
    assert (raised["statusCode"], json.loads(raised["body"])["errorType"]) == (500, "ZeroDivisionError")
    assert (bad["statusCode"], json.loads(bad["body"])["errorType"]) == (400, "BadRequest")
    assert emulator.endpoint_status("demo", "add")["counters"]["succeeded"] == 1
    assert emulator.endpoint_status("demo", "divide")["counters"]["failed"] == 1
