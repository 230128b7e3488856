"""The sample project's own tests: through the emulator (the ``lambdapool`` fixture of lambdapool's
pytest plugin) and, for plain code, against moto (``lambdapool_moto``)."""

import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # so that the tests can import chalicelib


@pytest.fixture
def lambdapool_project() -> Path:
    return PROJECT
