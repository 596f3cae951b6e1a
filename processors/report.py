"""Summaries rendered as the statistics users read (RED for operations, USE for resources).

Every value is a finite number or None: an empty window has no latency, not NaN.
"""

from __future__ import annotations

from typing import Any

from processors.summary import COUNTERS, CounterMark, OperationSummary, SystemSummary

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def efficiency_score(summary: OperationSummary) -> float | None:
    """0-100: the share of operations that succeeded, discounted by up to half for cache misses where a cache is used."""
    success = _ratio(summary.count - summary.errors, summary.count)
    if success is None:
        return None
    lookups = summary.cache_hits + summary.cache_misses
    cache_factor = 1.0 if lookups == 0 else 0.5 + 0.5 * summary.cache_hits / lookups
    return round(100.0 * success * cache_factor, 3)


def apdex(summary: OperationSummary, t_ms: float) -> float | None:
    """(satisfied + tolerating / 2) / total: satisfied within T, tolerating within 4 T (the Apdex standard)."""
    if not summary.count:
        return None
    satisfied = summary.latency.count_at_most(t_ms)
    tolerating = summary.latency.count_at_most(4 * t_ms) - satisfied
    return round((satisfied + tolerating / 2) / summary.count, 6)


def operation_stats(summary: OperationSummary, window_s: float, apdex_t_ms: float) -> dict[str, Any]:
    latency: dict[str, float | None] = {"mean": None, "min": None, "max": None, **{name: None for name, _ in QUANTILES}}
    if summary.count:
        latency["mean"] = summary.duration_ns_total / summary.count / 1e6
        latency["min"], latency["max"] = summary.min_ms, summary.max_ms
        values = summary.latency.quantiles([q for _, q in QUANTILES], summary.min_ms, summary.max_ms)
        latency.update(zip((name for name, _ in QUANTILES), values))
    lookups = summary.cache_hits + summary.cache_misses
    return {
        "count": summary.count,
        "rate_per_s": summary.count / window_s,
        "success_rate": _ratio(summary.count - summary.errors, summary.count),
        "error_rate": _ratio(summary.errors, summary.count),
        "errors": summary.errors,
        "errors_by_type": dict(summary.error_types),
        "latency_ms": latency,
        "cache": {"hits": summary.cache_hits, "misses": summary.cache_misses, "hit_rate": _ratio(summary.cache_hits, lookups)},
        "counters": {name: {"total": total, "rate_per_s": total / window_s} for name, total in sorted(summary.counters.items())},
        "efficiency_score": efficiency_score(summary),
        "apdex": apdex(summary, apdex_t_ms),
    }


def system_stats(summary: SystemSummary) -> dict[str, Any]:
    rss_bytes, memory_total_bytes, threads, open_files = summary.latest
    return {
        "samples": summary.samples,
        "cpu_percent": summary.cpu_percent_total / summary.samples if summary.samples else None,
        "cpu_percent_max": summary.cpu_percent_max,
        "rss_bytes": rss_bytes,
        "rss_bytes_max": summary.rss_bytes_max,
        "memory_total_bytes": memory_total_bytes,
        "threads": threads,
        "open_files": open_files,
        **_counter_rates(summary.first, summary.last),
    }


def _counter_rates(first: CounterMark, last: CounterMark) -> dict[str, float | None]:
    """`{counter}_per_s` for every cumulative counter between two marks.

    None when not measured at either end, when no time passed, or when the counter went
    backwards (a restarted process, a rebooted host): no rate rather than a zero or negative one.
    """
    (first_s, *first_values), (last_s, *last_values) = first, last
    elapsed_s = last_s - first_s
    return {
        f"{name}_per_s": (end - start) / elapsed_s if start is not None and end is not None and elapsed_s > 0 and end >= start else None
        for name, start, end in zip(COUNTERS, first_values, last_values, strict=True)
    }
