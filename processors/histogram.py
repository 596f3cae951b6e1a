"""A mergeable log-bucket latency histogram with bounded relative error (as DDSketch).

Bucket `i` holds values in (GAMMA^(i-1), GAMMA^i]; reporting the bucket's
harmonic-style midpoint `2 GAMMA^i / (GAMMA + 1)` bounds the relative error by
(GAMMA - 1) / (GAMMA + 1) < 1 %. Buckets are sparse ints, so windows and shards
merge exactly and memory grows with the spread of values, not their number.
"""

from __future__ import annotations

import math
from typing import Final, Mapping, MutableMapping, Sequence

import numpy as np

GAMMA: Final = 1.02
RELATIVE_ERROR: Final = (GAMMA - 1) / (GAMMA + 1)  # 0.0099
# Durations at or below one nanosecond land in one bucket reported as 0 ms.
ZERO_MS: Final = 1e-6
ZERO_INDEX: Final = math.floor(math.log(ZERO_MS) / math.log(GAMMA))
_INV_LOG_GAMMA: Final = 1.0 / math.log(GAMMA)

Buckets = MutableMapping[int, int]


def bucket_indices(values_ms: np.ndarray) -> np.ndarray:
    """The bucket of each value, vectorised."""
    safe = np.maximum(values_ms, ZERO_MS)
    indices = np.ceil(np.log(safe) * _INV_LOG_GAMMA).astype(np.int64)
    return np.where(values_ms <= ZERO_MS, ZERO_INDEX, indices)


def bucket_value(index: int) -> float:
    """The value reported for a bucket: within RELATIVE_ERROR of every value in it."""
    if index <= ZERO_INDEX:
        return 0.0
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


def merge_into(target: Buckets, source: Mapping[int, int]) -> None:
    for index, count in source.items():
        target[index] = target.get(index, 0) + count


def quantiles(buckets: Mapping[int, int], qs: Sequence[float], low_ms: float, high_ms: float) -> list[float]:
    """Quantiles by the lower-rank rule, clamped to the observed min and max."""
    total = sum(buckets.values())
    if total == 0:
        raise ValueError("quantiles of an empty histogram")
    order = sorted(buckets)
    counts = np.cumsum([buckets[i] for i in order])
    results = []
    for q in qs:
        rank = q * (total - 1)
        position = int(np.searchsorted(counts, rank, side="right"))
        results.append(min(max(bucket_value(order[min(position, len(order) - 1)]), low_ms), high_ms))
    return results


def to_wire(buckets: Mapping[int, int]) -> list[list[int]]:
    """Two parallel int lists: msgpack map keys must be strings under the pinned codec options."""
    order = sorted(buckets)
    return [order, [buckets[i] for i in order]]


def from_wire(value: Sequence[Sequence[int]]) -> dict[int, int]:
    indices, counts = value
    return dict(zip(indices, counts))
