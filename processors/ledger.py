"""Per-producer sequence marks: deduplication by (producer_id, seq) and gap counting.

Emitters send a producer's batches in sequence order and keep a batch's seq
across retries, so a seq at or below the high-water mark is a duplicate (a
retried XADD whose first reply was lost) and a jump past mark + 1 is loss.
Pure: its marks are part of every processor's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Mapping

from processors.contract import PartKey, Parts

PRODUCER_PART = "seq"
COUNTERS_PART = "runtime"
# A producer silent this long (by its own sent_at_s clock) is forgotten; a retry older than this is not expected.
FORGET_AFTER_S = 24 * 3600.0

COUNTER_NAMES: Final = (
    "entries_total",
    "events_total",
    "ticks_total",
    "duplicate_batches_total",
    "missing_batches_total",
    "dead_letters_total",
    "trimmed_entries_total",
)


@dataclass(slots=True)
class Ledger:
    marks: dict[str, list[float]] = field(default_factory=dict)  # producer_id -> [last seq, last sent_at_s]
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    _dirty: set[str] = field(default_factory=lambda: {""})  # "": the counters
    _deleted: set[str] = field(default_factory=set)

    def admit(self, producer_id: str, seq: int, sent_at_s: float) -> int | None:
        """None for a duplicate; else the number of batches missing just before this one."""
        mark = self.marks.get(producer_id)
        if mark is not None and seq <= mark[0]:
            self.count("duplicate_batches_total")
            return None
        missing = int(seq if mark is None else seq - mark[0] - 1)  # a producer's first batch is seq 0
        self.marks[producer_id] = [seq, max(sent_at_s, mark[1] if mark else sent_at_s)]
        self._dirty.add(producer_id)
        if missing:
            self.count("missing_batches_total", missing)
        if mark is None and len(self.marks) % 1024 == 0:  # sweep as producers are added, not on every batch
            self._forget_before(sent_at_s - FORGET_AFTER_S)
        return missing

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        self._dirty.add("")

    def _forget_before(self, cutoff_s: float) -> None:
        for producer_id in [p for p, (_, sent_at_s) in self.marks.items() if sent_at_s < cutoff_s]:
            del self.marks[producer_id]
            self._dirty.discard(producer_id)
            self._deleted.add(producer_id)

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written: Parts = {}
        for producer_id in self._dirty:
            if producer_id:
                written[(PRODUCER_PART, producer_id)] = self.marks[producer_id]
            else:
                written[(COUNTERS_PART,)] = dict(self.counters)
        deleted: set[PartKey] = {(PRODUCER_PART, p) for p in self._deleted}
        self._dirty.clear()
        self._deleted.clear()
        return written, deleted

    def snapshot(self) -> Parts:
        parts: Parts = {(PRODUCER_PART, p): mark for p, mark in self.marks.items()}
        parts[(COUNTERS_PART,)] = dict(self.counters)
        return parts

    @classmethod
    def restore(cls, parts: Mapping[PartKey, Any]) -> Ledger:
        ledger = cls()
        for key, value in parts.items():
            if key[0] == PRODUCER_PART:
                ledger.marks[str(key[1])] = list(value)
            elif key[0] == COUNTERS_PART:
                ledger.counters.update(value)
        return ledger
