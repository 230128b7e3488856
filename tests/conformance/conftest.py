"""Fixtures for conformance tests: what a function sees on Lambda, checked against a real emulator (a free
loopback port, real pipelines, real HTTP) and, in process, against the adapter's Lambda handlers."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambdapool.emulator import Emulator

APPS = Path(__file__).parent / "apps"
ENVIRONMENT_APP = APPS / "environment"
#: The emulator's host runs in a time zone that is not UTC and names a region: pipelines must not inherit
#: the former and must use the latter, as the deployed function would.
HOST_TZ = "America/New_York"
HOST_REGION = "eu-west-3"


@pytest.fixture(scope="module")
def environment_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, set[str]]]:
    """An emulator serving ``apps/environment`` from a host in :data:`HOST_TZ` and :data:`HOST_REGION`, with
    the UTC dates (``YYYY/MM/DD``) its pipelines may have started on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", HOST_TZ)
        patch.setenv("AWS_REGION", HOST_REGION)
        patch.delenv("AWS_DEFAULT_REGION", raising=False)
        patch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y/%m/%d")
        emulator = Emulator(ENVIRONMENT_APP, port=0, state_dir=tmp_path_factory.mktemp("state"), aws="none")
        try:
            emulator.start()
            emulator.serve_in_thread()
            yield emulator, {started, dt.datetime.now(dt.timezone.utc).strftime("%Y/%m/%d")}
        finally:
            emulator.close()


@contextlib.contextmanager
def app_module(directory: Path, name: str) -> Iterator[ModuleType]:
    """``directory/app.py`` imported in this process (as Lambda's runtime imports it) under ``name``; removed
    from ``sys.modules`` afterwards."""
    spec = importlib.util.spec_from_file_location(name, directory / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def served(directory: Path, state_dir: Path, **options: Any) -> Iterator[Emulator]:
    """An emulator serving ``directory`` on a free port, without a local AWS, with fast cold starts (unless
    ``options`` say otherwise); closed afterwards."""
    emulator = Emulator(directory, port=0, state_dir=state_dir, **{"aws": "none", "fast_cold_starts": True, **options})
    try:
        emulator.start()
        emulator.serve_in_thread()
        yield emulator
    finally:
        emulator.close()


def lambda_client(emulator: Emulator) -> Any:
    """A boto3 Lambda client on the emulator's Invoke API, without retries (what a test sees is one call)."""
    return boto3.client(
        "lambda",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


@pytest.fixture(scope="module")
def environment_module() -> Iterator[ModuleType]:
    """``apps/environment/app.py`` imported in this process."""
    with app_module(ENVIRONMENT_APP, "conformance_environment_app") as module:
        yield module
