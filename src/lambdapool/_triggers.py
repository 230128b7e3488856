"""What fires a trigger endpoint: a schedule or S3 object events, validated when they are declared.

Standard library only: it goes into Lambda packages.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._schedule import parse_schedule

__all__ = ["Trigger", "TriggerKind"]

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_S3_EVENT = re.compile(r"s3:[A-Za-z]+(:[A-Za-z*]+)*")


class TriggerKind(str, enum.Enum):
    """What fires a trigger endpoint."""

    SCHEDULE = "schedule"
    S3 = "s3"


@dataclasses.dataclass(frozen=True)
class Trigger:
    """What fires a trigger endpoint: a schedule (``expression``) or S3 object events in ``bucket``."""

    kind: TriggerKind
    expression: str = ""
    bucket: str = ""
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": self.kind.value, "events": list(self.events)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trigger:
        return cls(**{**data, "kind": TriggerKind(data["kind"]), "events": tuple(data.get("events", ()))})

    @classmethod
    def schedule(cls, expression: str) -> Trigger:
        """An EventBridge ``rate()`` or ``cron()`` schedule; raises ``ValueError`` for an invalid expression."""
        return cls(TriggerKind.SCHEDULE, expression=parse_schedule(expression).expression)

    @classmethod
    def s3(cls, bucket: str, prefix: str = "", suffix: str = "", events: Sequence[str] | None = None) -> Trigger:
        """Object events in ``bucket`` (``events`` defaults to ``["s3:ObjectCreated:*"]``) whose key starts with
        ``prefix`` and ends with ``suffix``. Raises ``ValueError`` for an invalid bucket or event name."""
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
        return cls(TriggerKind.S3, bucket=bucket, prefix=prefix, suffix=suffix, events=names)
