"""Summaries rendered as the statistics users read (RED for operations, USE for resources).

Every value is a finite number or None: an empty window has no latency, not NaN.
"""

from __future__ import annotations

from typing import Any

from processors.summary import OperationSummary, SystemSummary

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
    (first_s, first_read, first_write), (last_s, last_read, last_write) = summary.first, summary.last
    elapsed_s = last_s - first_s
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
        # Counters that went backwards (a restarted process) give no rate rather than a negative one.
        "read_bytes_per_s": (last_read - first_read) / elapsed_s if elapsed_s > 0 and last_read >= first_read else None,
        "write_bytes_per_s": (last_write - first_write) / elapsed_s if elapsed_s > 0 and last_write >= first_write else None,
    }
