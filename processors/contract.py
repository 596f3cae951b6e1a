"""What the runtime hands a processor, and what a processor hands back.

A processor is pure: `apply(items) -> outputs`, `snapshot()`, `restore(parts)`,
and `take_changes()` for the incremental checkpoint the runtime commits with
every batch. Its state is a mapping of part keys (tuples of str and int) to
msgpack-able values, so the runtime can store only the parts that changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, Union

from schemas.codec import DecodedColumns

PartKey = tuple[Union[str, int], ...]
Parts = dict[PartKey, Any]


@dataclass(frozen=True, slots=True)
class Tick:
    """A time mark the runtime appended to the log: advances event time when no events arrive."""

    entry_id: str
    time_s: float


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One decoded, deduplicated batch; `missing_batches` is the producer's sequence gap just before it."""

    entry_id: str
    decoded: DecodedColumns
    missing_batches: int


@dataclass(frozen=True, slots=True)
class RecordItem:
    """An entry of a derived or command stream (its short name, as in `schemas.names`), fields as text."""

    stream: str
    entry_id: str
    fields: Mapping[str, str]


Item = Union[Tick, BatchItem, RecordItem]


@dataclass(frozen=True, slots=True)
class StreamOutput:
    """An entry to append to a derived stream (short name, as in `schemas.names`)."""

    stream: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LatestOutput:
    """The newest value of `field` in a latest-value table that readers fetch in O(1); None deletes it."""

    table: str
    field: str
    value: str | None


@dataclass(frozen=True, slots=True)
class ControlOutput:
    """A control setting for a component (`{prefix}:control:{component}`); only the optimizer emits these."""

    component: str
    setting: str
    value: str


Output = Union[StreamOutput, LatestOutput, ControlOutput]


class Processor(Protocol):
    name: str

    def apply(self, items: Sequence[Item]) -> list[Output]: ...

    def snapshot(self) -> Parts: ...

    def restore(self, parts: Mapping[PartKey, Any]) -> None: ...

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        """Parts written and parts deleted since the last call (the incremental checkpoint)."""
        ...


def to_json(value: object) -> str:
    """Deterministic, JSON-safe text: a NaN or Inf here is a bug, so it raises rather than writes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
