"""Fixtures for the robustness tests: one real emulator per module, in a child process (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import BEHAVIOURS, SCHEDULED, EmulatorProcess


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so that --strict-markers accepts it whatever that says.
    config.addinivalue_line("markers", "robustness: fuzzing and fault injection over a real socket")


@pytest.fixture(scope="module")
def behaviours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The behaviours app (services ``b`` and ``secured``) served by an emulator in a child process; it is
    started again if a request kills it, and everything it started is gone after the module."""
    with EmulatorProcess(BEHAVIOURS, tmp_path_factory.mktemp("behaviours")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """A project with scheduled endpoints (``b/tick``, keyed ``secured/nightly``), for the fire route."""
    with EmulatorProcess(SCHEDULED, tmp_path_factory.mktemp("scheduled")) as emulator:
        yield emulator
