"""Mergeable window aggregates (reducers, as in quix-streams) and the vectorised fold of one batch.

Sums are kept as integers (durations in whole nanoseconds), so merging
windows, or folding a log in different read sizes, gives bit-identical results.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Mapping, Sequence

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
    latency: histogram.LogHistogram = field(default_factory=histogram.LogHistogram)
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
        self.latency.merge(other.latency)
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
            self.latency.to_wire(),
            self.cache_hits,
            self.cache_misses,
            self.counters,
        ]

    @classmethod
    def from_wire(cls, value: Sequence[Any]) -> OperationSummary:
        count, errors, error_types, duration_ns_total, min_ms, max_ms, latency, hits, misses, counters = value
        return cls(
            count=count,
            errors=errors,
            error_types=dict(error_types),
            duration_ns_total=duration_ns_total,
            min_ms=math.inf if min_ms is None else min_ms,
            max_ms=max_ms,
            latency=histogram.LogHistogram.from_wire(latency),
            cache_hits=hits,
            cache_misses=misses,
            counters=dict(counters),
        )


# Cumulative counters of a system sample, in the order of a `CounterMark`; None where not measured
# (network counters per process and in v1 samples), which stays unknown rather than zero.
COUNTERS: Final = ("read_bytes", "write_bytes", "net_sent_bytes", "net_recv_bytes", "net_sent_packets", "net_recv_packets")
CounterMark = tuple[float, *tuple[int | None, ...]]  # (timestamp_s, one value per COUNTERS)


@dataclass(slots=True)
class SystemSummary:
    """Resource samples of one process or host in one window; `COUNTERS` are cumulative, so rates use first and last."""

    samples: int = 0
    cpu_percent_total: float = 0.0
    cpu_percent_max: float = 0.0
    rss_bytes_max: int = 0
    first: CounterMark = (math.inf, *(None for _ in COUNTERS))
    last: CounterMark = (-math.inf, *(None for _ in COUNTERS))
    latest: tuple[int, int, int, int] = (0, 0, 0, 0)  # rss_bytes, memory_total_bytes, threads, open_files at `last`

    def add(self, timestamp_s: float, values: Mapping[str, Any]) -> None:
        self.samples += 1
        self.cpu_percent_total += values["cpu_percent"]
        self.cpu_percent_max = max(self.cpu_percent_max, values["cpu_percent"])
        self.rss_bytes_max = max(self.rss_bytes_max, values["rss_bytes"])
        mark: CounterMark = (timestamp_s, *(values[name] for name in COUNTERS))
        if timestamp_s < self.first[0]:
            self.first = mark
        if timestamp_s >= self.last[0]:
            self.last = mark
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
        return cls(samples, total, peak, rss_max, _counter_mark(first), _counter_mark(last), tuple(latest))


def _counter_mark(wire: Sequence[Any]) -> CounterMark:
    """A checkpointed mark; checkpoints written before the network counters hold read and write bytes only, so the rest is unknown."""
    timestamp_s, *values = wire
    return (timestamp_s, *values, *(None for _ in COUNTERS[len(values) :]))


def fold_operations(
    fields: Mapping[str, Sequence[Any]], names: Sequence[str], keep: np.ndarray | None, admit_counter: Callable[[str], str]
) -> tuple[dict[tuple[int, str], OperationSummary], dict[int, OperationSummary]]:
    """Summaries of one batch's operation columns per (1 s slot, operation name), and per slot over all operations.

    `names` is each event's (cardinality-capped) operation name; `keep` masks out late events.
    """
    codes_of = {name: code for code, name in enumerate(dict.fromkeys(names))}
    columns = {
        "slot": np.floor(np.asarray(fields["timestamp_s"], dtype=np.float64)).astype(np.int64),
        "code": np.fromiter(map(codes_of.__getitem__, names), dtype=np.int64, count=len(names)),
        "duration": np.asarray(fields["duration_ms"], dtype=np.float64),
        "ok": np.asarray(fields["ok"], dtype=bool),
        "hits": np.asarray(fields["cache_hits"], dtype=np.float64),
        "misses": np.asarray(fields["cache_misses"], dtype=np.float64),
    }
    if keep is not None:
        columns = {name: column[keep] for name, column in columns.items()}
    if len(columns["slot"]) == 0:
        return {}, {}
    columns["bucket"] = histogram.bucket_indices(columns["duration"])
    first_slot = int(columns["slot"].min())
    relative = columns["slot"] - first_slot
    name_of = list(codes_of)
    per_operation = {
        (first_slot + key // len(name_of), name_of[key % len(name_of)]): summary
        for key, summary in _summaries(relative * len(name_of) + columns["code"], columns).items()
    }
    per_slot = {first_slot + key: summary for key, summary in _summaries(relative, columns).items()}
    _fold_sparse(fields, names, keep, admit_counter, per_operation, per_slot)
    return per_operation, per_slot


def _summaries(keys: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[int, OperationSummary]:
    """One summary per distinct key, every figure computed with numpy over the whole batch."""
    groups, group_of = np.unique(keys, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group_of[order]) != 0])
    durations = columns["duration"]
    counts = np.bincount(group_of)
    errors = np.bincount(group_of, weights=~columns["ok"])
    nanos = np.bincount(group_of, weights=np.rint(durations * 1e6))  # whole nanoseconds, summed as Python ints across batches
    lows = np.minimum.reduceat(durations[order], starts)
    highs = np.maximum.reduceat(durations[order], starts)
    hit_sums = np.bincount(group_of, weights=columns["hits"])
    miss_sums = np.bincount(group_of, weights=columns["misses"])
    buckets = np.split(columns["bucket"][order], starts[1:])
    summaries = [
        OperationSummary(
            count=int(counts[g]),
            errors=int(errors[g]),
            duration_ns_total=int(nanos[g]),
            min_ms=float(lows[g]),
            max_ms=float(highs[g]),
            latency=histogram.LogHistogram.of_indices(buckets[g]),
            cache_hits=int(hit_sums[g]),
            cache_misses=int(miss_sums[g]),
        )
        for g in range(len(groups))
    ]
    return dict(zip(groups.tolist(), summaries))


def _fold_sparse(
    fields: Mapping[str, Sequence[Any]],
    names: Sequence[str],
    keep: np.ndarray | None,
    admit_counter: Callable[[str], str],
    per_operation: dict[tuple[int, str], OperationSummary],
    per_slot: dict[int, OperationSummary],
) -> None:
    """Error types and domain counters: present on few events, so a loop over those only."""
    error_types, counters, timestamps = fields["error_type"], fields["counters"], fields["timestamp_s"]
    failed = np.flatnonzero(~np.asarray(fields["ok"], dtype=bool)).tolist()
    with_counters = list(itertools.compress(range(len(counters)), counters))
    for i in failed:
        if keep is None or keep[i]:
            slot, error_type = math.floor(timestamps[i]), error_types[i] or "unknown"
            for errors in (per_operation[(slot, names[i])].error_types, per_slot[slot].error_types):
                errors[error_type] = errors.get(error_type, 0) + 1
    for i in with_counters:
        if keep is None or keep[i]:
            slot = math.floor(timestamps[i])
            for name, value in counters[i].items():
                name = admit_counter(name)
                for totals in (per_operation[(slot, names[i])].counters, per_slot[slot].counters):
                    totals[name] = totals.get(name, 0.0) + value
