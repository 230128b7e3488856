"""The local emulator: pools of real pipelines behind Werkzeug, with tasks, schedules and a local AWS.

Host side only: nothing here is vendored into Lambda packages. ``Emulator`` is imported on first use, so
that the fork server (which imports this package) does not load Werkzeug and the rest into every pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["Emulator"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from ._emulator import Emulator

        return Emulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
