"""From a topic partitioned by component to the one ordered log the monitor folds (pure: no Kafka here).

Stage 1 forwards every record of the `events` topic, with its partition and
offset, to the single-partition `ordered` topic, where the partitions arrive
interleaved as chance has it. Stage 2 puts them back into one order that does
not depend on chance: ticks are sent to every partition, and when the slowest
partition has passed a tick (the minimum watermark, as Kafka Streams merges
partitions), everything each partition sent before that tick is released,
partition by partition in offset order, then the tick itself. So one
partition's lag never makes another's events late, a failover changes no
output, and with one partition the order is exactly the events log's.
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
QUEUED_PART: Final = "q"  # a record waiting for its tick, by ordered offset
MARKS_PART: Final = "marks"


def tick_value(time_s: float, partitions: int) -> bytes:
    """A tick for one partition of `partitions`: stage 2 waits for the tick on all of them."""
    return pack([time_s, partitions])


def forwarded(partition: int, offset: int, is_tick: bool, value: bytes) -> bytes:
    """What stage 1 writes to the ordered topic for one record of the events topic."""
    return pack([partition, offset, is_tick, value])


@dataclass(slots=True)
class Reorder:
    """Records held per source partition until the watermark passes the tick that follows them."""

    marks: dict[int, float] = field(default_factory=dict)  # newest tick per partition
    partitions: int = 0
    applied_s: float = -math.inf
    queued: dict[int, list[Any]] = field(default_factory=dict)  # ordered offset -> [partition, entry_id, payload, tick time or None]
    _changed: set[PartKey] = field(default_factory=lambda: {(MARKS_PART,)})
    _removed: set[PartKey] = field(default_factory=set)

    def push(self, offset: int, value: bytes, limits: Limits) -> list[Entry]:
        """Take one ordered record; the entries it releases, in the one order (often none).

        The entry id names the source (`partition-offset` of the events topic), so a dead letter points at it.
        A tick that is not `[time_s, partitions]` in range raises RejectedEntry (stage 1 forwards ticks unread).
        """
        try:
            partition, source_offset, is_tick, payload = unpack(value, limits)
            entry_id = f"{int(partition)}-{int(source_offset)}"
        except (TypeError, ValueError) as exc:
            raise RejectedEntry("wrong_type", f"not a record forwarded by stage 1: {exc}") from exc
        if not isinstance(payload, bytes):  # a record with no value (a tombstone) or one from a stray producer
            raise RejectedEntry("wrong_type", f"record {entry_id} of the events topic has no bytes value: {type(payload).__name__}")
        if not is_tick:
            self._queue(offset, [partition, entry_id, payload, None])
            return []
        tick = unpack(payload, limits)
        if not (isinstance(tick, list) and len(tick) == 2 and isinstance(tick[1], int) and tick[1] >= 1):
            raise RejectedEntry("wrong_type", f"tick {entry_id}: expected [time_s, partitions], got {tick!r:.100}")
        problems = checks.timestamp([tick[0]], limits)
        if problems:
            raise RejectedEntry(problems[0][1], f"tick {entry_id}: {problems[0][2]}")
        time_s = float(tick[0])
        self._queue(offset, [partition, entry_id, None, time_s])
        self.marks[partition] = max(time_s, self.marks.get(partition, -math.inf))
        self.partitions = max(self.partitions, tick[1])  # partitions are only ever added to a topic
        self._changed.add((MARKS_PART,))
        if any(p not in self.marks for p in range(self.partitions)):
            return []
        watermark = min(self.marks[p] for p in range(self.partitions))
        if watermark <= self.applied_s:
            return []
        released: list[Entry] = []
        # Epoch by epoch, even when the slowest partition passes several ticks at once: the order must not
        # depend on how far behind it was.
        for epoch_s in sorted({item[3] for item in self.queued.values() if item[3] is not None and self.applied_s < item[3] <= watermark}):
            entries, tick_id = self._release(epoch_s)
            released += [*entries, (tick_id.encode(), {TICK_FIELD: pack(epoch_s)})]
        self.applied_s = watermark
        return released

    def _queue(self, offset: int, item: list[Any]) -> None:
        self.queued[offset] = item
        self._changed.add((QUEUED_PART, offset))

    def _release(self, epoch_s: float) -> tuple[list[Entry], str]:
        """Per partition in order, what came before its tick of this epoch (older ticks, sent again, go too);
        and the id of the first partition's tick of this epoch, which names the epoch's tick entry."""
        by_partition: dict[int, list[int]] = {}
        for offset, item in self.queued.items():  # insertion order is offset order
            by_partition.setdefault(item[0], []).append(offset)
        released: list[Entry] = []
        tick_ids: list[str] = []
        for partition in sorted(by_partition):
            for offset in by_partition[partition]:
                _, entry_id, payload, time_s = self.queued[offset]
                if time_s is not None and time_s > epoch_s:
                    break  # the next epoch's tick: it stays, with what follows it
                del self.queued[offset]
                self._changed.discard((QUEUED_PART, offset))
                self._removed.add((QUEUED_PART, offset))
                if time_s is None:
                    released.append((entry_id.encode(), {PAYLOAD_FIELD: payload}))
                elif time_s == epoch_s:
                    tick_ids.append(entry_id)
                    break  # this epoch's tick: what follows it belongs to the next
        return released, tick_ids[0] if tick_ids else f"tick-{epoch_s}"

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written: Parts = {key: self._part(key) for key in self._changed}
        removed = self._removed - set(written)
        self._changed, self._removed = set(), set()
        return written, removed

    def _part(self, key: PartKey) -> Any:
        if key == (MARKS_PART,):
            return {"marks": [[p, t] for p, t in sorted(self.marks.items())], "partitions": self.partitions, "applied_s": self.applied_s}
        return self.queued[int(key[1])]

    def snapshot(self) -> Parts:
        return {key: self._part(key) for key in [(MARKS_PART,), *((QUEUED_PART, o) for o in self.queued)]}

    @classmethod
    def restore(cls, parts: Mapping[PartKey, Any]) -> Reorder:
        reorder = cls(_changed=set())
        state = parts.get((MARKS_PART,))
        if state is not None:
            reorder.marks = {int(p): float(t) for p, t in state["marks"]}
            reorder.partitions, reorder.applied_s = int(state["partitions"]), float(state["applied_s"])
        queued = sorted((int(key[1]), value) for key, value in parts.items() if key[0] == QUEUED_PART)
        reorder.queued = {offset: list(value) for offset, value in queued}
        return reorder
