"""A mergeable log-bucket latency histogram with bounded relative error (as DDSketch).

Bucket `i` holds values in (GAMMA^(i-1), GAMMA^i]; reporting the bucket's
harmonic-style midpoint `2 GAMMA^i / (GAMMA + 1)` bounds the relative error by
(GAMMA - 1) / (GAMMA + 1) < 1 %. Buckets are sparse ints, so windows and shards
merge exactly and memory grows with the spread of values, not their number.
"""

from __future__ import annotations

import math
from typing import Any, Final, Sequence

import numpy as np

GAMMA: Final = 1.02
RELATIVE_ERROR: Final = (GAMMA - 1) / (GAMMA + 1)  # 0.0099
# Durations at or below one nanosecond land in one bucket reported as 0 ms.
ZERO_MS: Final = 1e-6
ZERO_INDEX: Final = math.floor(math.log(ZERO_MS) / math.log(GAMMA))
# Durations beyond about 11 days share the top bucket, which bounds a histogram's size whatever the input.
TOP_MS: Final = 1e9
TOP_INDEX: Final = math.ceil(math.log(TOP_MS) / math.log(GAMMA))
_INV_LOG_GAMMA: Final = 1.0 / math.log(GAMMA)


def bucket_indices(values_ms: np.ndarray) -> np.ndarray:
    """The bucket of each value, vectorised."""
    safe = np.maximum(values_ms, ZERO_MS)
    indices = np.ceil(np.log(np.minimum(safe, TOP_MS)) * _INV_LOG_GAMMA).astype(np.int64)
    return np.where(values_ms <= ZERO_MS, ZERO_INDEX, indices)


def bucket_value(index: int) -> float:
    """The value reported for a bucket: within RELATIVE_ERROR of every value in it."""
    if index <= ZERO_INDEX:
        return 0.0
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


class LogHistogram:
    """Bucket counts as one dense int64 array over the occupied index range.

    Merging is two slice operations whatever the number of buckets, which is what
    makes folding 1,000-event batches cheap; the range is bounded (about 1,750
    buckets from 1 ns to 11 days), so a histogram never exceeds about 14 KB.
    """

    __slots__ = ("offset", "counts")

    def __init__(self, offset: int = 0, counts: np.ndarray | None = None) -> None:
        self.offset = offset
        self.counts = np.zeros(0, dtype=np.int64) if counts is None else counts

    @classmethod
    def of_indices(cls, indices: np.ndarray) -> LogHistogram:
        low = int(indices.min())
        return cls(low, np.bincount(indices - low))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: LogHistogram) -> None:
        if not len(other.counts):
            return
        if not len(self.counts):
            self.offset, self.counts = other.offset, other.counts.copy()
            return
        low = min(self.offset, other.offset)
        high = max(self.offset + len(self.counts), other.offset + len(other.counts))
        if low != self.offset or high != self.offset + len(self.counts):
            grown = np.zeros(high - low, dtype=np.int64)
            grown[self.offset - low : self.offset - low + len(self.counts)] = self.counts
            self.offset, self.counts = low, grown
        start = other.offset - self.offset
        self.counts[start : start + len(other.counts)] += other.counts

    def quantiles(self, qs: Sequence[float], low_ms: float, high_ms: float) -> list[float]:
        """Quantiles by the lower-rank rule, clamped to the observed min and max."""
        cumulative = np.cumsum(self.counts)
        total = int(cumulative[-1]) if len(cumulative) else 0
        if total == 0:
            raise ValueError("quantiles of an empty histogram")
        positions = np.searchsorted(cumulative, [q * (total - 1) for q in qs], side="right")
        return [min(max(bucket_value(self.offset + int(p)), low_ms), high_ms) for p in positions]

    def count_at_most(self, value_ms: float) -> int:
        """Observations at or below `value_ms`, to the histogram's resolution (what Apdex counts)."""
        index = ZERO_INDEX if value_ms <= ZERO_MS else math.ceil(math.log(min(value_ms, TOP_MS)) * _INV_LOG_GAMMA)
        return int(self.counts[: max(index - self.offset + 1, 0)].sum())

    def to_wire(self) -> list[Any]:
        """[offset, occupied positions, their counts]: sparse, as most buckets of a wide range are empty."""
        occupied = np.flatnonzero(self.counts)
        return [self.offset, occupied.tolist(), self.counts[occupied].tolist()]

    @classmethod
    def from_wire(cls, value: Sequence[Any]) -> LogHistogram:
        offset, occupied, counts = value
        dense = np.zeros(occupied[-1] + 1 if occupied else 0, dtype=np.int64)
        dense[occupied] = counts
        return cls(int(offset), dense)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogHistogram) and self.to_wire() == other.to_wire()

    def __repr__(self) -> str:
        return f"LogHistogram(offset={self.offset}, total={self.total})"
