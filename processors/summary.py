"""Mergeable window aggregates (reducers, as in quix-streams) and the vectorised fold of one batch.

Sums are kept as integers (durations in whole nanoseconds), so merging
windows, or folding a log in different read sizes, gives bit-identical results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from processors import histogram


@dataclass(slots=True)
class OperationSummary:
    """Everything the statistics report about a set of operations in one window."""

    count: int = 0
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    duration_ns_total: int = 0
    min_ms: float = math.inf
    max_ms: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    counters: dict[str, float] = field(default_factory=dict)

    def merge(self, other: OperationSummary) -> None:
        self.count += other.count
        self.errors += other.errors
        for name, n in other.error_types.items():
            self.error_types[name] = self.error_types.get(name, 0) + n
        self.duration_ns_total += other.duration_ns_total
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)
        histogram.merge_into(self.buckets, other.buckets)
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        for name, value in other.counters.items():
            self.counters[name] = self.counters.get(name, 0.0) + value

    def to_wire(self) -> list[Any]:
        return [
            self.count,
            self.errors,
            self.error_types,
            self.duration_ns_total,
            None if math.isinf(self.min_ms) else self.min_ms,
            self.max_ms,
            histogram.to_wire(self.buckets),
            self.cache_hits,
            self.cache_misses,
            self.counters,
        ]

    @classmethod
    def from_wire(cls, value: Sequence[Any]) -> OperationSummary:
        count, errors, error_types, duration_ns_total, min_ms, max_ms, buckets, hits, misses, counters = value
        return cls(
            count=count,
            errors=errors,
            error_types=dict(error_types),
            duration_ns_total=duration_ns_total,
            min_ms=math.inf if min_ms is None else min_ms,
            max_ms=max_ms,
            buckets=histogram.from_wire(buckets),
            cache_hits=hits,
            cache_misses=misses,
            counters=dict(counters),
        )


@dataclass(slots=True)
class SystemSummary:
    """Resource samples of one process or host in one window; I/O counters are cumulative, so rates use first and last."""

    samples: int = 0
    cpu_percent_total: float = 0.0
    cpu_percent_max: float = 0.0
    rss_bytes_max: int = 0
    first: tuple[float, int, int] = (math.inf, 0, 0)  # (timestamp_s, read_bytes, write_bytes)
    last: tuple[float, int, int] = (-math.inf, 0, 0)
    latest: tuple[int, int, int, int] = (0, 0, 0, 0)  # rss_bytes, memory_total_bytes, threads, open_files at `last`

    def add(self, timestamp_s: float, values: Mapping[str, Any]) -> None:
        self.samples += 1
        self.cpu_percent_total += values["cpu_percent"]
        self.cpu_percent_max = max(self.cpu_percent_max, values["cpu_percent"])
        self.rss_bytes_max = max(self.rss_bytes_max, values["rss_bytes"])
        io = (timestamp_s, values["read_bytes"], values["write_bytes"])
        if timestamp_s < self.first[0]:
            self.first = io
        if timestamp_s >= self.last[0]:
            self.last = io
            self.latest = (values["rss_bytes"], values["memory_total_bytes"], values["threads"], values["open_files"])

    def merge(self, other: SystemSummary) -> None:
        self.samples += other.samples
        self.cpu_percent_total += other.cpu_percent_total
        self.cpu_percent_max = max(self.cpu_percent_max, other.cpu_percent_max)
        self.rss_bytes_max = max(self.rss_bytes_max, other.rss_bytes_max)
        if other.first[0] < self.first[0]:
            self.first = other.first
        if other.last[0] >= self.last[0]:
            self.last, self.latest = other.last, other.latest

    def to_wire(self) -> list[Any]:
        return [self.samples, self.cpu_percent_total, self.cpu_percent_max, self.rss_bytes_max, list(self.first), list(self.last), list(self.latest)]

    @classmethod
    def from_wire(cls, value: Sequence[Any]) -> SystemSummary:
        samples, total, peak, rss_max, first, last, latest = value
        return cls(samples, total, peak, rss_max, tuple(first), tuple(last), tuple(latest))


def fold_operations(
    fields: Mapping[str, Sequence[Any]], names: Sequence[str], keep: np.ndarray | None, admit_counter: Callable[[str], str]
) -> dict[tuple[int, str], OperationSummary]:
    """Summaries per (1 s slot, operation name) of one batch's operation columns.

    `names` is each event's (cardinality-capped) operation name; `keep` masks out late events.
    """
    timestamps = np.asarray(fields["timestamp_s"], dtype=np.float64)
    durations = np.asarray(fields["duration_ms"], dtype=np.float64)
    ok = np.asarray(fields["ok"], dtype=bool)
    hits = np.asarray(fields["cache_hits"], dtype=np.float64)
    misses = np.asarray(fields["cache_misses"], dtype=np.float64)
    codes_of: dict[str, int] = {}
    codes = np.fromiter((codes_of.setdefault(n, len(codes_of)) for n in names), dtype=np.int64, count=len(names))
    slots = np.floor(timestamps).astype(np.int64)
    if keep is not None:
        timestamps, durations, ok, hits, misses, codes, slots = (a[keep] for a in (timestamps, durations, ok, hits, misses, codes, slots))
    if len(codes) == 0:
        return {}
    first_slot = int(slots.min())
    keys = (slots - first_slot) * len(codes_of) + codes
    groups, group_of = np.unique(keys, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group_of[order]) != 0])
    counts = np.bincount(group_of)
    errors = np.bincount(group_of, weights=~ok)
    nanos = np.bincount(group_of, weights=np.rint(durations * 1e6))  # whole nanoseconds, summed as Python ints across batches
    lows = np.minimum.reduceat(durations[order], starts)
    highs = np.maximum.reduceat(durations[order], starts)
    hit_sums = np.bincount(group_of, weights=hits)
    miss_sums = np.bincount(group_of, weights=misses)
    name_of = list(codes_of)
    summaries: dict[tuple[int, str], OperationSummary] = {}
    for g, key in enumerate(groups.tolist()):
        slot, code = divmod(key, len(codes_of))
        summaries[(first_slot + slot, name_of[code])] = OperationSummary(
            count=int(counts[g]),
            errors=int(errors[g]),
            duration_ns_total=int(nanos[g]),
            min_ms=float(lows[g]),
            max_ms=float(highs[g]),
            cache_hits=int(hit_sums[g]),
            cache_misses=int(miss_sums[g]),
        )
    bucket_keys, bucket_counts = np.unique(group_of * (1 << 20) + (histogram.bucket_indices(durations) - histogram.ZERO_INDEX), return_counts=True)
    group_keys = groups.tolist()
    for key, n in zip(bucket_keys.tolist(), bucket_counts.tolist()):
        g, index = divmod(key, 1 << 20)
        slot, code = divmod(group_keys[g], len(codes_of))
        summaries[(first_slot + slot, name_of[code])].buckets[index + histogram.ZERO_INDEX] = n
    _fold_sparse(fields, names, np.asarray(fields["ok"], dtype=bool), keep, admit_counter, summaries)
    return summaries


def _fold_sparse(
    fields: Mapping[str, Sequence[Any]],
    names: Sequence[str],
    ok: np.ndarray,
    keep: np.ndarray | None,
    admit_counter: Callable[[str], str],
    into: dict[tuple[int, str], OperationSummary],
) -> None:
    """Error types and domain counters: present on few events, so a loop over those only."""
    error_types, counters, timestamps = fields["error_type"], fields["counters"], fields["timestamp_s"]
    failed = np.flatnonzero(~ok).tolist()
    with_counters = [] if set(map(type, counters)) == {type(None)} else [i for i, c in enumerate(counters) if c]
    for i in failed:
        if keep is None or keep[i]:
            errors = into[(math.floor(timestamps[i]), names[i])].error_types
            error_type = error_types[i] or "unknown"
            errors[error_type] = errors.get(error_type, 0) + 1
    for i in with_counters:
        if keep is None or keep[i]:
            totals = into[(math.floor(timestamps[i]), names[i])].counters
            for name, value in counters[i].items():
                name = admit_counter(name)
                totals[name] = totals.get(name, 0.0) + value
