"""Percentiles from the log-bucket histogram agree with numpy's exact ones within 1 %."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from processors import histogram

Q = [0.5, 0.9, 0.95, 0.99]
DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lognormal heavy tail": lambda rng, n: rng.lognormal(0.0, 1.5, n),
    "pareto": lambda rng, n: (rng.pareto(1.5, n) + 1) * 0.2,
    "exponential": lambda rng, n: rng.exponential(5.0, n),
    "bimodal cache hit/miss": lambda rng, n: np.where(rng.random(n) < 0.9, rng.normal(0.05, 0.005, n).clip(0.01), rng.normal(40, 5, n).clip(1)),
    "microseconds to minutes": lambda rng, n: 10 ** rng.uniform(-3, 5, n),
}


def buckets_of(values: np.ndarray) -> histogram.LogHistogram:
    return histogram.LogHistogram.of_indices(histogram.bucket_indices(values))


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_quantiles_are_within_one_percent_of_numpy(name: str) -> None:
    values = DISTRIBUTIONS[name](np.random.default_rng(7), 200_000)
    estimated = buckets_of(values).quantiles(Q, float(values.min()), float(values.max()))
    exact = np.percentile(values, [100 * q for q in Q])
    relative = np.abs(np.array(estimated) - exact) / exact
    assert relative.max() <= 0.01, dict(zip(Q, relative))


def test_merging_halves_equals_the_whole() -> None:
    values = np.random.default_rng(1).lognormal(0, 1, 10_000)
    merged = buckets_of(values[5000:])
    merged.merge(buckets_of(values[:5000]))
    assert merged == buckets_of(values)
    empty = histogram.LogHistogram()
    empty.merge(merged)
    assert empty == merged and empty.counts is not merged.counts


def test_zero_durations_are_reported_as_zero() -> None:
    assert buckets_of(np.array([0.0, 0.0, 0.0])).quantiles([0.5], 0.0, 0.0) == [0.0]


def test_wire_form_round_trips() -> None:
    buckets = buckets_of(np.array([0.1, 2.0, 2.0, 300.0]))
    assert histogram.LogHistogram.from_wire(buckets.to_wire()) == buckets


def test_hostile_durations_cannot_grow_a_histogram_without_bound() -> None:
    extremes = buckets_of(np.array([0.0, 1e-300, 1e300, 1e9]))
    assert len(extremes.counts) == histogram.TOP_INDEX - histogram.ZERO_INDEX + 1
    assert extremes.quantiles([0.99], 0.0, 1e300) == [pytest.approx(1e9, rel=0.01)]
