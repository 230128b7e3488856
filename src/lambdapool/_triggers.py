"""What fires a trigger endpoint, one type per kind: a schedule, or S3 object events. Validated when they
are declared.

:data:`Trigger` is the union of the kinds: code that treats triggers by kind matches on the type and ends with
:func:`assert_never`, so that ``mypy --strict`` names every such switch that misses a kind when one is added.

Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NoReturn, TypeAlias

from ._schedule import parse_schedule

__all__ = ["S3Trigger", "ScheduleTrigger", "Trigger", "TriggerKind", "assert_never", "trigger_from_json"]

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_EVENT = re.compile(r"s3:[A-Za-z]+(:[A-Za-z*]+)*")


class TriggerKind(str, enum.Enum):
    """The name of a trigger's kind, as descriptions and the status page give it."""

    SCHEDULE = "schedule"
    S3 = "s3"


@dataclasses.dataclass(frozen=True)
class ScheduleTrigger:
    """An EventBridge ``rate()`` or ``cron()`` schedule."""

    kind: ClassVar[TriggerKind] = TriggerKind.SCHEDULE
    expression: str

    @classmethod
    def parse(cls, expression: str) -> ScheduleTrigger:
        """Raises ``ValueError`` for an invalid expression, saying what is wrong."""
        return cls(parse_schedule(expression).expression)

    @property
    def source(self) -> str:
        """What fires it, in a word: its expression."""
        return self.expression

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "expression": self.expression}


@dataclasses.dataclass(frozen=True)
class S3Trigger:
    """Object events in ``bucket`` whose key starts with ``prefix`` and ends with ``suffix``."""

    kind: ClassVar[TriggerKind] = TriggerKind.S3
    bucket: str
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)

    @classmethod
    def of(cls, bucket: str, prefix: str = "", suffix: str = "", events: Sequence[str] | None = None) -> S3Trigger:
        """``events`` defaults to ``["s3:ObjectCreated:*"]``. Raises ``ValueError`` for an invalid bucket or
        event name."""
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
            raise ValueError(f"on_s3_event: {bucket!r} is not a valid S3 bucket name")
        names = tuple(events) if events is not None else ("s3:ObjectCreated:*",)
        if (
            isinstance(events, str)
            or not names
            or not all(isinstance(e, str) and _S3_EVENT.fullmatch(e) for e in names)
        ):
            raise ValueError(f"on_s3_event: events must be S3 event names like 's3:ObjectCreated:*', got {events!r}")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise ValueError("on_s3_event: prefix and suffix must be strings")
        return cls(bucket, prefix, suffix, names)

    @property
    def source(self) -> str:
        """What fires it, in a word: ``s3://bucket/prefix*suffix``."""
        return f"s3://{self.bucket}/{self.prefix}*{self.suffix}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "events": list(self.events),
        }


#: What fires a trigger endpoint: one of the kinds.
Trigger: TypeAlias = ScheduleTrigger | S3Trigger


def trigger_from_json(data: Mapping[str, Any]) -> Trigger:
    """The inverse of the kinds' ``to_json``; raises ``ValueError`` for an unknown kind."""
    kind = TriggerKind(data["kind"])
    if kind is TriggerKind.SCHEDULE:
        return ScheduleTrigger(str(data["expression"]))
    if kind is TriggerKind.S3:
        return S3Trigger(
            str(data["bucket"]),
            str(data.get("prefix", "")),
            str(data.get("suffix", "")),
            tuple(data.get("events", ("s3:ObjectCreated:*",))),
        )
    assert_never(kind)


def assert_never(value: NoReturn) -> NoReturn:
    """The end of a switch over :data:`Trigger`'s kinds (or :class:`TriggerKind`): mypy flags a call it can
    reach, i.e. a kind the switch misses (``typing.assert_never`` arrived in Python 3.11)."""
    raise AssertionError(f"unhandled trigger kind: {value!r}")
