"""Tiered event-time windows of mergeable summaries, with change tracking for incremental checkpoints.

Three tiers per series: 1 s slots (the sliding "last 10 s" view), the fixed
window buckets (default 10 s), and 1 m buckets (the 1 m, 5 m and 15 m views).
Events land in slots only; when a fixed window closes (after which no late event
can change it) its bucket is built from its slots and folded into its minute.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Union

from processors.contract import PartKey, Parts
from processors.summary import OperationSummary, SystemSummary

Summary = Union[OperationSummary, SystemSummary]
SeriesKey = tuple[str, ...]
SLOT_S = 1
MINUTE_S = 60
SYSTEM_FAMILIES = frozenset({"process", "host"})


def new_summary(key: SeriesKey) -> Summary:
    return SystemSummary() if key[0] in SYSTEM_FAMILIES else OperationSummary()


def combined(first: Mapping[SeriesKey, Summary], then: Mapping[SeriesKey, Summary]) -> dict[SeriesKey, Summary]:
    """Fresh summaries of `first` merged with `then`, in that order (float sums depend on it), leaving both untouched."""
    result: dict[SeriesKey, Summary] = {}
    for part in (first, then):
        for key, summary in part.items():
            if key not in result:
                result[key] = new_summary(key)
            result[key].merge(summary)  # type: ignore[arg-type]
    return result


class TieredWindows:
    def __init__(self, window_s: int) -> None:
        if window_s <= SLOT_S or MINUTE_S % window_s:
            raise ValueError(f"window_s must divide 60 and exceed 1, got {window_s}")
        self.window_s = window_s
        self._tiers: dict[int, dict[int, dict[SeriesKey, Summary]]] = {SLOT_S: {}, window_s: {}, MINUTE_S: {}}
        self._dirty: set[tuple[int, int, SeriesKey]] = set()
        self._deleted: set[tuple[int, int, SeriesKey]] = set()
        # Derived, not state: bumped on every change to a slot, so merges of unchanged slots can be cached;
        # and the slots' series by component, so one component's view does not scan every series.
        self._slot_versions: dict[int, int] = {}
        self._slot_components: dict[int, dict[str, dict[SeriesKey, Summary]]] = {}

    def add(self, key: SeriesKey, slot_s: int, partial: Summary) -> None:
        """Fold a partial summary into its 1 s slot (the fixed bucket is built from the slots when it closes)."""
        series = self._tiers[SLOT_S].setdefault(slot_s, {})
        summary = series.get(key)
        if summary is None:
            summary = series[key] = new_summary(key)
            self._slot_components.setdefault(slot_s, {}).setdefault(key[1], {})[key] = summary
        summary.merge(partial)  # type: ignore[arg-type]
        self._dirty.add((SLOT_S, slot_s, key))
        self._slot_versions[slot_s] = self._slot_versions.get(slot_s, 0) + 1

    def slot_versions(self, starts: Iterable[int]) -> tuple[int, ...]:
        """Change counters of these slots: equal tuples mean their merge is unchanged."""
        return tuple(self._slot_versions.get(s, 0) for s in starts)

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

    def merged(self, resolution: int, starts: Iterable[int], component: str | None = None, families: frozenset[str] | None = None) -> dict[SeriesKey, Summary]:
        """Each series' summary over the given buckets of one tier (fresh objects: the tier is untouched),
        optionally only the series of one component, of some families."""
        result: dict[SeriesKey, Summary] = {}
        for start in sorted(starts):
            if component is not None and resolution == SLOT_S:
                candidates = self._slot_components.get(start, {}).get(component, {})
            else:
                candidates = self._tiers[resolution].get(start, {})
            for key, summary in candidates.items():
                if component is not None and (key[1] != component or key[0] == "host") or families is not None and key[0] not in families:
                    continue
                if key not in result:
                    result[key] = new_summary(key)
                result[key].merge(summary)  # type: ignore[arg-type]
        return result

    def expire(self, resolution: int, before_s: int) -> None:
        tier = self._tiers[resolution]
        if resolution == SLOT_S:
            self._slot_versions = {s: v for s, v in self._slot_versions.items() if s >= before_s}
            self._slot_components = {s: c for s, c in self._slot_components.items() if s >= before_s}
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
        for by_component in self._slot_components.values():
            for key_part in [c for c in by_component if c in drop] if where == 1 else []:
                del by_component[key_part]

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
        summary = self._tiers[int(resolution)].setdefault(int(start), {})[series_key] = cls.from_wire(value)
        if resolution == SLOT_S:
            self._slot_components.setdefault(int(start), {}).setdefault(series_key[1], {})[series_key] = summary
