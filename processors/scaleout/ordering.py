"""From a topic partitioned by component to the one ordered log the monitor folds (pure: no Kafka here).

Stage 1 forwards every record of the `events` topic, with its partition and
offset, to the single-partition `ordered` topic; stage 2 turns those records
into the same stream entries the Redis runtime reads. Ticks are sent to every
partition, and time advances only when every partition has passed it (the
minimum watermark, as Kafka Streams merges partitions), so one partition's
lag never makes another's events late. With one partition the ordered log is
exactly the events log, tick for tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Mapping

from schemas import checks
from schemas.checks import Limits
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack, unpack
from schemas.errors import RejectedEntry

from processors.contract import PartKey, Parts
from processors.intake import Entry

# The Kafka header that marks a tick record (a batch record has none): the value is msgpack [time_s, partitions].
KIND_HEADER: Final = "pipepulse-kind"
TICK_KIND: Final = b"tick"
MERGE_PART: Final = "merge"


def tick_value(time_s: float, partitions: int) -> bytes:
    """A tick for one partition of `partitions`: stage 2 waits for the tick on all of them."""
    return pack([time_s, partitions])


def forwarded(partition: int, offset: int, is_tick: bool, value: bytes) -> bytes:
    """What stage 1 writes to the ordered topic for one record of the events topic."""
    return pack([partition, offset, is_tick, value])


@dataclass(slots=True)
class TickMerge:
    """The newest tick per source partition; the time to apply is the oldest of them, once every partition has one."""

    marks: dict[int, float] = field(default_factory=dict)
    partitions: int = 0
    applied_s: float = -math.inf
    _changed: bool = True

    def observe(self, partition: int, time_s: float, partitions: int) -> float | None:
        """The new stream time when this tick moves the slowest partition forward, else None."""
        self.marks[partition] = max(time_s, self.marks.get(partition, -math.inf))
        self.partitions = max(self.partitions, partitions)  # partitions are only ever added to a topic
        self._changed = True
        if any(p not in self.marks for p in range(self.partitions)):
            return None
        watermark = min(self.marks[p] for p in range(self.partitions))
        if watermark <= self.applied_s:
            return None
        self.applied_s = watermark
        return watermark

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        if not self._changed:
            return {}, set()
        self._changed = False
        return self.snapshot(), set()

    def snapshot(self) -> Parts:
        return {(MERGE_PART,): {"marks": [[p, t] for p, t in sorted(self.marks.items())], "partitions": self.partitions, "applied_s": self.applied_s}}

    @classmethod
    def restore(cls, parts: Mapping[PartKey, Any]) -> TickMerge:
        state = parts.get((MERGE_PART,))
        if state is None:
            return cls()
        return cls(marks={int(p): float(t) for p, t in state["marks"]}, partitions=int(state["partitions"]), applied_s=float(state["applied_s"]), _changed=False)


def to_entry(value: bytes, merge: TickMerge, limits: Limits) -> Entry | None:
    """An ordered-topic record as the stream entry the Redis runtime would read; None for a tick that moves no time.

    The entry id names the source (`partition-offset` of the events topic), so a dead letter points at it.
    A tick that is not `[time_s, partitions]` in range raises RejectedEntry (stage 1 forwards ticks unread).
    """
    partition, offset, is_tick, payload = unpack(value, limits)
    entry_id = f"{partition}-{offset}".encode()
    if not is_tick:
        return entry_id, {PAYLOAD_FIELD: payload}
    tick = unpack(payload, limits)
    if not (isinstance(tick, list) and len(tick) == 2 and isinstance(tick[1], int) and tick[1] >= 1):
        raise RejectedEntry("wrong_type", f"tick {entry_id.decode()}: expected [time_s, partitions], got {tick!r:.100}")
    problems = checks.timestamp([tick[0]], limits)
    if problems:
        raise RejectedEntry(problems[0][1], f"tick {entry_id.decode()}: {problems[0][2]}")
    moved = merge.observe(partition, float(tick[0]), tick[1])
    return None if moved is None else (entry_id, {TICK_FIELD: pack(moved)})
