"""Tiered event-time windows of mergeable summaries, with change tracking for incremental checkpoints.

Three tiers per series: 1 s slots (the sliding "last 10 s" view), the fixed
window buckets (default 10 s), and 1 m buckets (the 1 m, 5 m and 15 m views).
Events land in slots only; when a fixed window closes (after which no late event
can change it) its bucket is built from its slots and folded into its minute.
"""

from __future__ import annotations

from typing import Iterable, Union

from processors.contract import PartKey, Parts
from processors.summary import OperationSummary, SystemSummary

Summary = Union[OperationSummary, SystemSummary]
SeriesKey = tuple[str, ...]
SLOT_S = 1
MINUTE_S = 60
SYSTEM_FAMILIES = frozenset({"process", "host"})


def new_summary(key: SeriesKey) -> Summary:
    return SystemSummary() if key[0] in SYSTEM_FAMILIES else OperationSummary()


class TieredWindows:
    def __init__(self, window_s: int) -> None:
        if window_s <= SLOT_S or MINUTE_S % window_s:
            raise ValueError(f"window_s must divide 60 and exceed 1, got {window_s}")
        self.window_s = window_s
        self._tiers: dict[int, dict[int, dict[SeriesKey, Summary]]] = {SLOT_S: {}, window_s: {}, MINUTE_S: {}}
        self._dirty: set[tuple[int, int, SeriesKey]] = set()
        self._deleted: set[tuple[int, int, SeriesKey]] = set()

    def add(self, key: SeriesKey, slot_s: int, partial: Summary) -> None:
        """Fold a partial summary into its 1 s slot (the fixed bucket is built from the slots when it closes)."""
        series = self._tiers[SLOT_S].setdefault(slot_s, {})
        summary = series.get(key)
        if summary is None:
            summary = series[key] = new_summary(key)
        summary.merge(partial)  # type: ignore[arg-type]
        self._dirty.add((SLOT_S, slot_s, key))

    def data_starts(self) -> set[int]:
        """Starts of the fixed buckets that hold data (closed ones, or open ones through their slots)."""
        window = self.window_s
        return {s - s % window for s in self._tiers[SLOT_S]} | self._tiers[window].keys()

    def close_bucket(self, start_s: int) -> None:
        """Build a closed fixed bucket from its slots, and fold it into its minute."""
        bucket = self.merged(SLOT_S, range(start_s, start_s + self.window_s))
        if bucket:
            self._tiers[self.window_s][start_s] = bucket
        minute = start_s - start_s % MINUTE_S
        target = self._tiers[MINUTE_S].setdefault(minute, {})
        for key, summary in bucket.items():
            self._dirty.add((self.window_s, start_s, key))
            if key not in target:
                target[key] = new_summary(key)
            target[key].merge(summary)  # type: ignore[arg-type]
            self._dirty.add((MINUTE_S, minute, key))

    def merged(self, resolution: int, starts: Iterable[int]) -> dict[SeriesKey, Summary]:
        """Each series' summary over the given buckets of one tier (fresh objects: the tier is untouched)."""
        result: dict[SeriesKey, Summary] = {}
        for start in sorted(starts):
            for key, summary in self._tiers[resolution].get(start, {}).items():
                if key not in result:
                    result[key] = new_summary(key)
                result[key].merge(summary)  # type: ignore[arg-type]
        return result

    def expire(self, resolution: int, before_s: int) -> None:
        tier = self._tiers[resolution]
        for start in [s for s in tier if s < before_s]:
            for key in tier.pop(start):
                self._dirty.discard((resolution, start, key))
                self._deleted.add((resolution, start, key))

    def forget(self, drop: frozenset[str], where: int) -> None:
        """Drop every bucket of series whose key has `key[where]` in `drop` (a forgotten component)."""
        for resolution, tier in self._tiers.items():
            for start, series in tier.items():
                for key in [k for k in series if len(k) > where and k[where] in drop]:
                    del series[key]
                    self._dirty.discard((resolution, start, key))
                    self._deleted.add((resolution, start, key))

    # -- checkpoint parts: ("w", resolution, start, *series_key) -> wire form

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written: Parts = {("w", r, s, *k): self._tiers[r][s][k].to_wire() for r, s, k in self._dirty}
        deleted: set[PartKey] = {("w", r, s, *k) for r, s, k in self._deleted}
        self._dirty.clear()
        self._deleted.clear()
        return written, deleted

    def snapshot(self) -> Parts:
        return {("w", r, s, *k): summary.to_wire() for r, tier in self._tiers.items() for s, series in tier.items() for k, summary in series.items()}

    def restore_part(self, key: PartKey, value: list[object]) -> None:
        _, resolution, start, *series = key
        series_key = tuple(str(part) for part in series)
        cls = SystemSummary if series_key[0] in SYSTEM_FAMILIES else OperationSummary
        self._tiers[int(resolution)].setdefault(int(start), {})[series_key] = cls.from_wire(value)
